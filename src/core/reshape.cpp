// reshape: ops that only change the per-sample shape.
//   Flatten  (C, ...) -> (C·...) in C order;  forward y = x,  backward dx = dy  (a copy each way:
//            every op of a network writes its own activation buffer)
// Write rule: forward overwrites (=) y; backward overwrites (=) dx.
#include <algorithm>

#include "core/op.hpp"

namespace gradstep::cpu {
namespace {

template <class T>
class FlattenOp : public Op<T> {
 public:
  FlattenOp(const OpAttrs&, const Shape& in) {
    this->in_ = in;
    this->out_ = Shape{{in.size()}};
  }
  void forward(const OpArgs<T>& a, T* y, const T* x) override {
    std::copy(x, x + a.N * this->in_.size(), y);
  }
  void backward(const OpArgs<T>& a, T* dx, const T* dy, const T*, const T*) override {
    if (dx) std::copy(dy, dy + a.N * this->in_.size(), dx);
  }
};

}  // namespace

GS_REGISTER_OP("Flatten", FlattenOp);

}  // namespace gradstep::cpu
