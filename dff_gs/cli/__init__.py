"""The command lines: each module parses ``argv``, calls the library and reports in one line on error
(:func:`dff_gs.errors.run_cli`).

=================  =====================================  ====================================
module             command                                console script (``pip install``)
=================  =====================================  ====================================
``train``          ``python train.py``                    ``dff-train``
``edit``           ``python edit.py``                     ``dff-edit``
``query``          ``python -m dff_gs.query``             ``dff-query`` (Gaussians or a NeRF)
``render``         ``python -m dff_gs.render``            ``dff-render``
``bench``          ``python -m dff_gs.bench``             ``dff-bench``
=================  =====================================  ====================================
"""
