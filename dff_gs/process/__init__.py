"""``python -m dff_gs.process INPUT --out SCENE``: a folder of photos or a video posed into a COLMAP scene
(:mod:`dff_gs.cli.process`; the library is :mod:`dff_gs.data.posing`)."""
