"""``python -m dff_gs.view RUN_OR_PLY``: query, edit and export a scene in the browser (viser).

- :mod:`~dff_gs.view.session`: the viewer's state and actions as a Python API (:class:`ViewerSession`)
- :mod:`~dff_gs.view.splats`: a model as the browser's Gaussian splats; colour views and the highlight
- :mod:`~dff_gs.view.server`: the page (:class:`ViewerApp`), each control one session call
- :mod:`~dff_gs.view.live`: the Gaussians of a training run, updated while it trains (``train.py --viewer``)
"""
