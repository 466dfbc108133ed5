// Building ops from what Python gives: a kind name, an attribute dict and a per-sample shape; and
// resolving an op's parameter slots to pointers into a flat arena. Shared by the lone-op handle
// (bind_op.cpp) and the network (bind_network.cpp), so both check the same things.
#pragma once
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <memory>
#include <string>
#include <vector>

#include "bindings/check.hpp"
#include "core/op.hpp"

namespace gradstep::bind {

// {name: number or sequence of numbers} -> OpAttrs (TypeError for anything else).
inline cpu::OpAttrs attrs_from(const py::dict& d, const std::string& kind) {
  cpu::OpAttrs a;
  a.op = kind;
  for (const auto& kv : d) {
    if (!py::isinstance<py::str>(kv.first))
      throw py::type_error(kind + ": attribute names must be strings");
    const std::string key = py::cast<std::string>(kv.first);
    std::vector<double> v;
    py::handle h = kv.second;
    if (py::isinstance<py::bool_>(h) || py::isinstance<py::int_>(h) || py::isinstance<py::float_>(h)) {
      v.push_back(py::cast<double>(h));
    } else if (py::isinstance<py::tuple>(h) || py::isinstance<py::list>(h)) {
      for (py::handle e : py::cast<py::sequence>(h)) {
        if (!(py::isinstance<py::int_>(e) || py::isinstance<py::float_>(e)))
          throw py::type_error(kind + ": attribute '" + key + "' must hold numbers");
        v.push_back(py::cast<double>(e));
      }
    } else {
      throw py::type_error(kind + ": attribute '" + key + "' must be a number or a tuple of numbers");
    }
    a.values[key] = v;
  }
  return a;
}

inline cpu::Shape shape_from(const py::sequence& s, const std::string& kind) {
  cpu::Shape sh;
  for (py::handle e : s) {
    if (!py::isinstance<py::int_>(e)) throw py::type_error(kind + ": a shape must hold integers");
    sh.dims.push_back(py::cast<int64_t>(e));
  }
  return sh;
}

inline py::tuple shape_tuple(const std::vector<int64_t>& dims) {
  py::tuple t(dims.size());
  for (size_t i = 0; i < dims.size(); ++i) t[i] = dims[i];
  return t;
}

// A parameter slot as Python lays it out: (name, offset, shape).
struct SlotRef {
  std::string name;
  int64_t offset;
  std::vector<int64_t> shape;
};

// Checks Python's slots against the op's own (same names, shapes, inside P elements).
template <class T>
std::vector<int64_t> check_slots(const cpu::Op<T>& op, const std::vector<SlotRef>& slots,
                                 int64_t P, const std::string& who) {
  const auto& want = op.param_slots();
  if (slots.size() != want.size())
    throw py::value_error(who + ": the op has " + std::to_string(want.size()) +
                          " parameter slots, got " + std::to_string(slots.size()));
  std::vector<int64_t> offsets;
  for (size_t i = 0; i < want.size(); ++i) {
    const SlotRef& s = slots[i];
    if (s.name != want[i].name || s.shape != want[i].shape)
      throw py::value_error(who + ": parameter slot " + std::to_string(i) + " must be '" +
                            want[i].name + "' of shape " + shape_str(want[i].shape) + ", got '" +
                            s.name + "' of shape " + shape_str(s.shape));
    if (s.offset < 0 || s.offset > P || want[i].size() > P - s.offset)
      throw py::value_error(who + ": parameter slot '" + s.name +
                            "' lies outside the parameter buffer");
    offsets.push_back(s.offset);
  }
  return offsets;
}

inline std::vector<SlotRef> slots_from(const py::sequence& seq, const std::string& kind) {
  std::vector<SlotRef> out;
  for (py::handle h : seq) {
    py::tuple t = py::cast<py::tuple>(h);
    if (t.size() != 3) throw py::value_error(kind + ": a slot is (name, offset, shape)");
    out.push_back({py::cast<std::string>(t[0]), py::cast<int64_t>(t[1]),
                   shape_from(py::cast<py::sequence>(t[2]), kind).dims});
  }
  return out;
}

// Checks the op's buffers (dtype T, shape, C-contiguous, writable) and returns their pointers.
template <class T>
std::vector<T*> buffer_ptrs(const cpu::Op<T>& op, const std::vector<py::array>& bufs,
                            const char* who) {
  const auto& want = op.buffer_slots();
  if (bufs.size() != want.size())
    throw py::value_error(std::string(who) + ": the op has " + std::to_string(want.size()) +
                          " buffers, got " + std::to_string(bufs.size()));
  std::vector<T*> out;
  for (size_t i = 0; i < want.size(); ++i) {
    py::array a = bufs[i];
    out.push_back(bind::out<T>(a, who, want[i].name.c_str(), want[i].shape));
  }
  return out;
}

}  // namespace gradstep::bind
