"""The command lines, argument parsing only: each module turns ``argv`` into a call of the library and one line
on error (:func:`dff_gs.errors.run_cli`).

=================  =====================================  ====================================
module             command                                console script (``pip install``)
=================  =====================================  ====================================
``train``          ``python train.py``                    ``dff-train``
``edit``           ``python edit.py``                     ``dff-edit``
``query``          ``python -m dff_gs.query``             ``dff-query`` (Gaussians or a NeRF)
``nerf_query``     (``dff-query`` on a NeRF run)
``render``         ``python -m dff_gs.render``            ``dff-render``
``bench``          ``python -m dff_gs.bench``             ``dff-bench``
=================  =====================================  ====================================
"""
