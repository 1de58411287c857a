// One bind_<family> per kernel family file; module.cpp calls them all.
#pragma once

#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

namespace cnnkern {

namespace py = pybind11;
template <typename T>
using carray = py::array_t<T, py::array::c_style>;  // no forcecast: the front door checked dtypes

void bind_conv(py::module_& m);
void bind_conv_pool(py::module_& m);
void bind_conv_algo(py::module_& m);
void bind_dense(py::module_& m);
void bind_pool(py::module_& m);
void bind_batchnorm(py::module_& m);
void bind_activation(py::module_& m);
void bind_loss(py::module_& m);
void bind_optim(py::module_& m);
void bind_augment(py::module_& m);
void bind_quant(py::module_& m);

}  // namespace cnnkern
