// octavo._C: the pybind11 face of the C++ engine. Conversion only; the GIL is released
// while the engine works. C++ exceptions become ValueError / OSError / RuntimeError.
#include <pybind11/pybind11.h>

#include <cstring>

#include "octavo/errors.h"

namespace py = pybind11;

namespace octavo::bindings {
void register_engine(py::module_& m);
void register_metrics(py::module_& m);
void register_testing(py::module_& m);
}  // namespace octavo::bindings

namespace {
// Messages may quote bytes of a corrupt file: decode with replacement so the exception
// keeps its text (and the file name) instead of turning into a UnicodeDecodeError.
void set_python_error(PyObject* type, const char* message) {
  PyObject* text = PyUnicode_DecodeUTF8(message, static_cast<Py_ssize_t>(std::strlen(message)), "replace");
  if (text == nullptr) {
    PyErr_SetString(type, "octavo: an error whose message could not be decoded");
    return;
  }
  PyErr_SetObject(type, text);
  Py_DECREF(text);
}
}  // namespace

PYBIND11_MODULE(_C, m) {
  m.doc() = "octavo's native engine";
  py::register_exception_translator([](std::exception_ptr p) {
    try {
      if (p) std::rethrow_exception(p);
    } catch (const octavo::NotFound& e) {
      set_python_error(PyExc_OSError, e.what());
    } catch (const octavo::InvalidArgument& e) {
      set_python_error(PyExc_ValueError, e.what());
    } catch (const octavo::Unsupported& e) {
      set_python_error(PyExc_ValueError, e.what());
    } catch (const octavo::Error& e) {
      set_python_error(PyExc_RuntimeError, e.what());
    }
  });
  octavo::bindings::register_metrics(m);
  octavo::bindings::register_engine(m);
  py::module_ testing = m.def_submodule("testing", "Internals exposed for octavo's own tests");
  octavo::bindings::register_testing(testing);
}
