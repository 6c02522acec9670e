// octavo._C: the pybind11 face of the C++ engine. Conversion only; the GIL is released
// while the engine works. C++ exceptions become ValueError / OSError / RuntimeError.
#include <pybind11/pybind11.h>

#include "octavo/errors.h"

namespace py = pybind11;

namespace octavo::bindings {
void register_engine(py::module_& m);
void register_testing(py::module_& m);
}  // namespace octavo::bindings

PYBIND11_MODULE(_C, m) {
  m.doc() = "octavo's native engine";
  py::register_exception_translator([](std::exception_ptr p) {
    try {
      if (p) std::rethrow_exception(p);
    } catch (const octavo::NotFound& e) {
      PyErr_SetString(PyExc_OSError, e.what());
    } catch (const octavo::InvalidArgument& e) {
      PyErr_SetString(PyExc_ValueError, e.what());
    } catch (const octavo::Unsupported& e) {
      PyErr_SetString(PyExc_ValueError, e.what());
    } catch (const octavo::Error& e) {
      PyErr_SetString(PyExc_RuntimeError, e.what());
    }
  });
  octavo::bindings::register_engine(m);
  py::module_ testing = m.def_submodule("testing", "Internals exposed for octavo's own tests");
  octavo::bindings::register_testing(testing);
}
