// Python module of the extension: importing segzoo._C loads the shared
// library, whose static initialisers register the operators under
// torch.ops.segzoo.
#include <Python.h>
#include <torch/library.h>

#ifdef WITH_CUDA
#include <cuda.h>
#endif

namespace segzoo {

int64_t cuda_version() {
#ifdef WITH_CUDA
  return CUDA_VERSION;
#else
  return -1;
#endif
}

TORCH_LIBRARY_FRAGMENT(segzoo, m) {
  m.def("_cuda_version", &cuda_version);
}

}  // namespace segzoo

PyMODINIT_FUNC PyInit__C(void) {
  static struct PyModuleDef module = {
      PyModuleDef_HEAD_INIT, "_C", "segzoo C++/CUDA operators", -1, nullptr};
  return PyModule_Create(&module);
}
