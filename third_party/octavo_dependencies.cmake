# Finds what octavo builds against; every dependency comes from a package registry.
#   nlohmann-json: PyPI's nlohmann-json (headers), else a system package.
#   BLAS: PyPI's scipy-openblas32 (symbols prefixed scipy_), else the system's CBLAS.
#   OpenMP: the compiler's. GoogleTest: Debian's libgtest-dev. pybind11: PyPI.

find_package(OpenMP REQUIRED)

if(OCTAVO_PYTHON OR NOT DEFINED Python_EXECUTABLE)
  find_package(Python COMPONENTS Interpreter Development.Module)
endif()

function(octavo_python_query out code)
  if(Python_EXECUTABLE)
    execute_process(COMMAND ${Python_EXECUTABLE} -c "${code}"
      OUTPUT_VARIABLE value OUTPUT_STRIP_TRAILING_WHITESPACE ERROR_QUIET RESULT_VARIABLE rc)
    if(rc EQUAL 0)
      set(${out} "${value}" PARENT_SCOPE)
    endif()
  endif()
endfunction()

# ---- nlohmann-json -----------------------------------------------------------------------
find_package(nlohmann_json 3.10 QUIET)
if(NOT nlohmann_json_FOUND)
  octavo_python_query(NLOHMANN_INCLUDE
    "import nlohmann_json, os; print(os.path.join(os.path.dirname(nlohmann_json.__file__), 'include'))")
  if(NOT NLOHMANN_INCLUDE OR NOT EXISTS "${NLOHMANN_INCLUDE}/nlohmann/json.hpp")
    message(FATAL_ERROR "nlohmann-json not found: pip install nlohmann-json")
  endif()
  add_library(nlohmann_json INTERFACE IMPORTED)
  target_include_directories(nlohmann_json INTERFACE ${NLOHMANN_INCLUDE})
  add_library(nlohmann_json::nlohmann_json ALIAS nlohmann_json)
endif()

# ---- BLAS --------------------------------------------------------------------------------
add_library(octavo_blas INTERFACE)
octavo_python_query(SCIPY_OPENBLAS
  "import scipy_openblas32 as s; print(s.get_include_dir() + ';' + s.get_lib_dir())")
if(SCIPY_OPENBLAS)
  list(GET SCIPY_OPENBLAS 0 OPENBLAS_INCLUDE)
  list(GET SCIPY_OPENBLAS 1 OPENBLAS_LIBDIR)
  find_library(OPENBLAS_LIBRARY NAMES scipy_openblas PATHS ${OPENBLAS_LIBDIR} NO_DEFAULT_PATH REQUIRED)
  target_include_directories(octavo_blas INTERFACE ${OPENBLAS_INCLUDE})
  target_link_libraries(octavo_blas INTERFACE ${OPENBLAS_LIBRARY})
  target_compile_definitions(octavo_blas INTERFACE OCTAVO_BLAS_SCIPY_OPENBLAS=1)
  message(STATUS "octavo: BLAS from scipy-openblas32 (${OPENBLAS_LIBRARY})")
else()
  set(BLA_VENDOR OpenBLAS)
  find_package(BLAS)
  if(NOT BLAS_FOUND)
    unset(BLA_VENDOR)
    find_package(BLAS REQUIRED)
  endif()
  find_path(CBLAS_INCLUDE cblas.h PATH_SUFFIXES openblas REQUIRED)
  target_include_directories(octavo_blas INTERFACE ${CBLAS_INCLUDE})
  target_link_libraries(octavo_blas INTERFACE ${BLAS_LIBRARIES})
  message(STATUS "octavo: system BLAS (${BLAS_LIBRARIES})")
endif()
add_library(octavo::blas ALIAS octavo_blas)

# ---- pybind11, GoogleTest -----------------------------------------------------------------
if(OCTAVO_PYTHON)
  octavo_python_query(PYBIND11_CMAKE_DIR "import pybind11; print(pybind11.get_cmake_dir())")
  find_package(pybind11 CONFIG REQUIRED HINTS ${PYBIND11_CMAKE_DIR})
endif()
if(OCTAVO_TESTS)
  find_package(GTest REQUIRED)
endif()
