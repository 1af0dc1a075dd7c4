// Python binding of the cuda_ext kernels (prebuilt as cuda_ext._C by setup.py, or JIT-built by cuda_ext.load()).
#include <torch/extension.h>

#include "lift.h"

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
    m.doc() = "dff_gs CUDA kernels: feature lifting (see cuda_ext/reference.py for the PyTorch twins)";
    m.def("lift_accumulate", &dff_lift::lift_accumulate, py::arg("means2d"), py::arg("conics"), py::arg("opacities"),
          py::arg("maps"), py::arg("pix_weights"), py::arg("tile_offsets"), py::arg("flatten_ids"), py::arg("width"),
          py::arg("height"), py::arg("tile_size"), py::arg("top_k"), py::arg("feat_sum"), py::arg("weight_sum"),
          "Accumulate alpha-compositing-weighted features per Gaussian into feat_sum [N, C] and weight_sum [N]");
    m.def("lift_normalize", &dff_lift::lift_normalize, py::arg("feat_sum"), py::arg("weight_sum"), py::arg("eps"),
          py::arg("out"), "out = feat_sum / weight_sum where weight_sum > eps, else 0 (every element written)");
    m.attr("MAX_TOP_K") = dff_lift::kMaxTopK;
}
