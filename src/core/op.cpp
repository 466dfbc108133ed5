#include "core/op.hpp"

#include <cmath>
#include <sstream>
#include <stdexcept>
#include <utility>

namespace gradstep::cpu {

int64_t Shape::size() const {
  int64_t n = 1;
  for (int64_t d : dims) n *= d;
  return n;
}

std::string Shape::str() const {
  std::ostringstream s;
  s << "(";
  for (size_t i = 0; i < dims.size(); ++i) s << (i ? ", " : "") << dims[i];
  if (dims.size() == 1) s << ",";
  s << ")";
  return s.str();
}

int64_t Slot::size() const {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

namespace {

std::string number_str(double v) {
  std::ostringstream s;
  s << v;
  return s.str();
}

}  // namespace

double OpAttrs::real(const std::string& key) const {
  auto it = values.find(key);
  if (it == values.end()) throw std::invalid_argument(op + ": missing attribute '" + key + "'");
  if (it->second.size() != 1)
    throw std::invalid_argument(op + ": attribute '" + key + "' must be one number, got " +
                                std::to_string(it->second.size()));
  if (!std::isfinite(it->second[0]))
    throw std::invalid_argument(op + ": attribute '" + key + "' must be finite, got " +
                                number_str(it->second[0]));
  return it->second[0];
}

double OpAttrs::real_or(const std::string& key, double fallback) const {
  return values.count(key) ? real(key) : fallback;
}

namespace {
int64_t as_integer(const std::string& op, const std::string& key, double v, int64_t min) {
  // 2^40 bounds every size this library handles (and keeps the cast below defined).
  if (!(v == std::floor(v)) || v < static_cast<double>(min) || v > 1099511627776.0)
    throw std::invalid_argument(op + ": attribute '" + key + "' must be an integer >= " +
                                std::to_string(min) + ", got " + number_str(v));
  return static_cast<int64_t>(v);
}
}  // namespace

int64_t OpAttrs::integer(const std::string& key, int64_t min) const {
  return as_integer(op, key, real(key), min);
}

int64_t OpAttrs::integer_or(const std::string& key, int64_t fallback, int64_t min) const {
  return values.count(key) ? integer(key, min) : fallback;
}

std::vector<int64_t> OpAttrs::ints(const std::string& key, size_t count, int64_t min) const {
  auto it = values.find(key);
  if (it == values.end()) throw std::invalid_argument(op + ": missing attribute '" + key + "'");
  if (it->second.size() != count)
    throw std::invalid_argument(op + ": attribute '" + key + "' must hold " +
                                std::to_string(count) + " numbers, got " +
                                std::to_string(it->second.size()));
  std::vector<int64_t> out;
  for (double v : it->second) out.push_back(as_integer(op, key, v, min));
  return out;
}

bool OpAttrs::flag_or(const std::string& key, bool fallback) const {
  return values.count(key) ? real(key) != 0.0 : fallback;
}

namespace {

struct Registry {
  std::map<std::string, std::pair<OpFactory<float>, OpFactory<double>>> kinds;
};

// A function-local static: registrations from other files' static initializers find it built.
Registry& registry() {
  static Registry r;
  return r;
}

}  // namespace

bool register_op(const std::string& kind, OpFactory<float> f32, OpFactory<double> f64) {
  registry().kinds[kind] = {std::move(f32), std::move(f64)};
  return true;
}

std::vector<std::string> op_kinds() {
  std::vector<std::string> out;
  for (const auto& kv : registry().kinds) out.push_back(kv.first);
  return out;
}

template <class T>
std::unique_ptr<Op<T>> make_op(const std::string& kind, const OpAttrs& attrs, const Shape& in) {
  auto it = registry().kinds.find(kind);
  if (it == registry().kinds.end()) {
    std::string known;
    for (const auto& k : op_kinds()) known += (known.empty() ? "" : ", ") + k;
    throw std::invalid_argument("unknown op kind '" + kind + "'; registered: " + known);
  }
  if (in.rank() < 1 || in.rank() > 3)
    throw std::invalid_argument(kind + ": the per-sample input shape must have 1 to 3 axes, got " +
                                in.str());
  int64_t size = 1;
  for (int64_t d : in.dims) {
    if (d < 1 || d > (int64_t(1) << 40))
      throw std::invalid_argument(kind + ": every input axis must be >= 1, got " + in.str());
    size *= d;  // <= 2^40 after each step (checked below), so no overflow
    if (size > (int64_t(1) << 40))
      throw std::invalid_argument(kind + ": the input " + in.str() + " has more than 2^40 values per sample");
  }
  OpAttrs named = attrs;
  named.op = kind;
  if constexpr (sizeof(T) == 4) return it->second.first(named, in);
  else return it->second.second(named, in);
}

template std::unique_ptr<Op<float>> make_op<float>(const std::string&, const OpAttrs&, const Shape&);
template std::unique_ptr<Op<double>> make_op<double>(const std::string&, const OpAttrs&, const Shape&);

void require_rank(const std::string& op, const Shape& in, int64_t rank, const char* layout) {
  if (in.rank() != rank)
    throw std::invalid_argument(op + ": input must be " + layout + " per sample, got shape " +
                                in.str());
}

void require_rank_between(const std::string& op, const Shape& in, int64_t lo, int64_t hi,
                          const char* layouts) {
  if (in.rank() < lo || in.rank() > hi)
    throw std::invalid_argument(op + ": input must be " + layouts + " per sample, got shape " +
                                in.str());
}

}  // namespace gradstep::cpu
