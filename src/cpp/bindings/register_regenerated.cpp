// Chains that do not store their weights (Chain(..., store_weights=False)): the Python
// chain holds a RegeneratedChain, which every chain binding accepts in place of its
// weight and bias lists (chain_view.hpp); here is the type, and its single layers.
#include <pybind11/stl.h>

#include "arrays.hpp"
#include "chain_view.hpp"
#include "pyjac/chain/regenerated.hpp"
#include "release_gil.hpp"

namespace pyjac::bindings {
namespace {

RegeneratedChain make_regenerated(const std::vector<int>& widths, const std::string& init,
                                  double gain, double bias_std, std::uint64_t seed,
                                  int checkpoint_every) {
  RegeneratedChain c;
  c.widths = widths;
  c.init.init = parse_init(init);
  c.init.gain = gain;
  c.init.bias_std = bias_std;
  c.init.seed = seed;
  c.checkpoint_every = checkpoint_every;
  c.validate();
  return c;
}

template <typename T>
py::tuple layer_typed(const RegeneratedChain& c, int layer, int n_threads) {
  if (layer < 0 || layer >= c.depth())
    throw py::index_error("layer " + std::to_string(layer) + " out of range for depth " +
                          std::to_string(c.depth()));
  py::array_t<T> w({c.widths[layer + 1], c.widths[layer]});
  py::array_t<T> b(c.widths[layer + 1]);
  T* wp = w.mutable_data();
  T* bp = b.mutable_data();
  release_gil([&] { draw_layer<T>(c, layer, wp, bp, n_threads); });
  return py::make_tuple(w, b);
}

py::tuple layer(const RegeneratedChain& c, int layer, const std::string& dtype, int n_threads) {
  if (dtype == "float32") return layer_typed<float>(c, layer, n_threads);
  if (dtype == "float64") return layer_typed<double>(c, layer, n_threads);
  throw py::type_error("dtype: expected 'float32' or 'float64', got '" + dtype + "'");
}

}  // namespace

void register_regenerated(py::module_& m) {
  py::class_<RegeneratedChain>(m, "RegeneratedChain",
                               "What a chain that does not store its weights draws them from.")
      .def(py::init(&make_regenerated), py::arg("widths"), py::arg("init"), py::arg("gain"),
           py::arg("bias_std"), py::arg("seed"), py::arg("checkpoint_every"))
      .def_property_readonly("depth", &RegeneratedChain::depth)
      .def("checkpoint_interval", &RegeneratedChain::checkpoint_interval, py::arg("batch"),
           "Layers between the activations a backward pass on this batch keeps.")
      .def("layer", &layer, py::arg("layer"), py::arg("dtype"), py::arg("n_threads"),
           "Layer `layer`'s (weights, biases), exactly as the stored chain of this seed has "
           "them.");
  m.def("regenerated_workspace_bytes", &regenerated_workspace_bytes, py::arg("widths"),
        py::arg("batch"), py::arg("dtype_size"), py::arg("checkpoint_every"));
}

}  // namespace pyjac::bindings
