"""dff_gs: Distilled Feature Fields on 3D Gaussian Splatting."""

__version__ = "0.1.0"
