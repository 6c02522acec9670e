# CUDA for the CUDA backend: the toolkit's nvcc and runtime, and cuBLASLt from the toolkit
# or from PyPI's nvidia-cublas wheel (nvidia/cu13/{include,lib}). Sets OCTAVO_WITH_CUDA.
#   OCTAVO_CUDA=AUTO: build the backend when nvcc and cuBLASLt are both found.
#   OCTAVO_CUDA=ON:   fail when either is missing.  OFF: never.

set(OCTAVO_WITH_CUDA OFF)
if(OCTAVO_CUDA STREQUAL "OFF")
  return()
endif()

include(CheckLanguage)
if(NOT CMAKE_CUDA_COMPILER AND EXISTS /usr/local/cuda/bin/nvcc)
  set(CMAKE_CUDA_COMPILER /usr/local/cuda/bin/nvcc)
endif()
check_language(CUDA)
if(NOT CMAKE_CUDA_COMPILER)
  if(OCTAVO_CUDA STREQUAL "ON")
    message(FATAL_ERROR "OCTAVO_CUDA=ON but no CUDA compiler (nvcc) was found")
  endif()
  message(STATUS "octavo: no nvcc, building without the CUDA backend")
  return()
endif()

find_package(CUDAToolkit QUIET)
set(_cublas_hints "")
octavo_python_query(_nvidia_cu13
  "import importlib.util, os; s = importlib.util.find_spec('nvidia'); print(next(p for p in s.submodule_search_locations if os.path.isdir(os.path.join(p, 'cu13'))) + '/cu13')")
if(_nvidia_cu13)
  list(APPEND _cublas_hints ${_nvidia_cu13})
endif()
if(CUDAToolkit_FOUND)
  list(APPEND _cublas_hints ${CUDAToolkit_LIBRARY_ROOT} ${CUDAToolkit_TARGET_DIR})
endif()
find_path(OCTAVO_CUBLASLT_INCLUDE cublasLt.h HINTS ${_cublas_hints} ${CUDAToolkit_INCLUDE_DIRS} PATH_SUFFIXES include)
find_library(OCTAVO_CUBLASLT_LIBRARY NAMES cublasLt libcublasLt.so.13 libcublasLt.so.12
  HINTS ${_cublas_hints} ${CUDAToolkit_LIBRARY_DIR} PATH_SUFFIXES lib lib64)
if(NOT CUDAToolkit_FOUND OR NOT OCTAVO_CUBLASLT_INCLUDE OR NOT OCTAVO_CUBLASLT_LIBRARY)
  if(OCTAVO_CUDA STREQUAL "ON")
    message(FATAL_ERROR "OCTAVO_CUDA=ON but the CUDA toolkit or cuBLASLt is missing "
                        "(pip install nvidia-cublas provides cuBLASLt)")
  endif()
  message(STATUS "octavo: nvcc found but not cuBLASLt; building without the CUDA backend")
  return()
endif()

if(NOT DEFINED CMAKE_CUDA_ARCHITECTURES)
  # Ampere and Hopper, the GPUs octavo targets (set before enable_language, which would
  # otherwise pick nvcc's own default, sm_75 for CUDA 13). Hopper as 90a, the arch-specific
  # target: wgmma and setmaxnreg (the Hopper prefill kernel) exist only there.
  set(CMAKE_CUDA_ARCHITECTURES 80 90a)
endif()
# One CUDA runtime, the shared one, for nvcc-linked code and host code alike.
set(CMAKE_CUDA_RUNTIME_LIBRARY Shared)
enable_language(CUDA)
set(CMAKE_CUDA_STANDARD 17)
set(CMAKE_CUDA_STANDARD_REQUIRED ON)

add_library(octavo_cublaslt INTERFACE)
target_include_directories(octavo_cublaslt INTERFACE ${OCTAVO_CUBLASLT_INCLUDE})
target_link_libraries(octavo_cublaslt INTERFACE ${OCTAVO_CUBLASLT_LIBRARY})
add_library(octavo::cublaslt ALIAS octavo_cublaslt)
get_filename_component(OCTAVO_CUBLASLT_LIBDIR ${OCTAVO_CUBLASLT_LIBRARY} DIRECTORY)
# The Hopper prefill kernel (paged_attention_prefill_wgmma.cu) is compiled only for sm_90a; the
# host side may pick it only when this binary carries sm_90a code.
set(OCTAVO_CUDA_HAS_SM90A OFF)
foreach(_arch IN LISTS CMAKE_CUDA_ARCHITECTURES)
  if(_arch MATCHES "^90a")
    set(OCTAVO_CUDA_HAS_SM90A ON)
  endif()
endforeach()
set(OCTAVO_WITH_CUDA ON)
message(STATUS "octavo: CUDA backend ON (archs ${CMAKE_CUDA_ARCHITECTURES}, sm_90a kernels ${OCTAVO_CUDA_HAS_SM90A}, cuBLASLt ${OCTAVO_CUBLASLT_LIBRARY})")
