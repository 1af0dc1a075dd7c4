"""``python -m dff_gs.bench``: Gaussians vs the NeRF-DFF backbone on one scene (:mod:`dff_gs.bench.backbones`)."""
