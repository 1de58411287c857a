// Softmax cross-entropy with integer labels, mean over the batch (docs/design.md §3).
//   softmax_cross_entropy_forward:  logits (N,C), labels int64 (N,) -> loss 0-d float32, probs (N,C)
//   softmax_cross_entropy_backward: probs (N,C), labels int64 (N,) -> dlogits (N,C) = (probs - onehot)/N
// Per row, with m = max_j x_j and s = Σ_j exp(x_j - m): probs = exp(x - m)/s and the row loss is
// -log_softmax[label] = log s - (x[label] - m), never log of a probability (which underflows), and never
// assembled as m + log s - x[label]: with a large offset (logits near 1e16) m + log s rounds back to m and
// the loss would come out 0 instead of log s. exp runs in
// float, s and the losses accumulate in double. Rows are independent; the loss is summed per fixed block of
// rows and the block sums added in order, so its value does not depend on the thread count.
//   softmax_cross_entropy_soft_forward:  logits, targets (N,C), weights (N,) | None -> loss, probs, with row
//       loss w_n·Σ_c t_c·(log s − (x_c − m)) and loss = Σ rows / N (Keras's weighted mean over the batch)
//   softmax_cross_entropy_soft_backward: probs, targets, weights | None -> w_n·(Σ_c t_c·probs − t) / N
#include <algorithm>
#include <array>
#include <atomic>
#include <cmath>
#include <optional>
#include <string>

#include <pybind11/stl.h>

#include "runtime/bindings.h"
#include "runtime/common.h"

namespace cnnkern {
namespace {

constexpr int64_t kBlocks = 64;            // loss partial sums (on the stack)
constexpr int64_t kSerialBelow = 1 << 14;  // N*C below which threads cost more than they save

struct Dims {
  int64_t N, C;
};

Dims check(const carray<float>& a, const carray<int64_t>& labels, const char* name) {
  if (a.ndim() != 2) throw py::value_error(std::string(name) + " must be 2-d (N,C)");
  if (labels.ndim() != 1 || labels.shape(0) != a.shape(0))
    throw py::value_error(std::string("labels must have shape (N,) with N = ") + std::to_string(a.shape(0)));
  if (a.shape(0) < 1 || a.shape(1) < 1)
    throw py::value_error(std::string(name) + " must have N >= 1 and C >= 1");
  return {a.shape(0), a.shape(1)};
}

// Runs fn(begin, end) over [0, n) on the pool when the work (n * per_item) is large enough.
template <typename Fn>
void run_rows(int64_t n, int64_t per_item, const Fn& fn) {
  if (n * per_item < kSerialBelow)
    fn(0, n);
  else
    parallel_for(n, fn);
}

// A row's max m (NaN if any logit is NaN); writes p_j = exp(x_j - m) and their sum s.
float shifted_exp(const float* x, int64_t C, float* p, double& s) {
  float m = x[0];
  for (int64_t j = 1; j < C; ++j)
    if (x[j] > m || std::isnan(x[j])) m = x[j];
  s = 0.0;
  for (int64_t j = 0; j < C; ++j) {
    p[j] = std::exp(x[j] - m);
    s += p[j];
  }
  return m;
}

// One row: writes probs, returns the row loss log s - (x[label] - m), from the shifted logit. A NaN logit
// makes the max, and so the whole row, NaN.
double softmax_row(const float* x, int64_t C, int64_t label, float* p) {
  double s;
  const float m = shifted_exp(x, C, p, s);
  const float inv = static_cast<float>(1.0 / s);
  for (int64_t j = 0; j < C; ++j) p[j] *= inv;
  return std::log(s) - (static_cast<double>(x[label]) - static_cast<double>(m));
}

py::tuple softmax_cross_entropy_forward(const carray<float>& logits, const carray<int64_t>& labels) {
  const Dims d = check(logits, labels, "logits");
  carray<float> loss(std::vector<py::ssize_t>{});
  carray<float> probs({d.N, d.C});
  const float* xp = logits.data();
  const int64_t* lp = labels.data();
  float* pp = probs.mutable_data();
  std::array<double, kBlocks> partial{};
  const int64_t blocks = std::min(d.N, kBlocks);
  std::atomic<bool> bad{false};
  {
    py::gil_scoped_release release;
    run_rows(blocks, d.N / blocks * d.C, [&](int64_t begin, int64_t end) {
      for (int64_t b = begin; b < end; ++b) {
        double sum = 0.0;
        for (int64_t i = d.N * b / blocks; i < d.N * (b + 1) / blocks; ++i) {
          const int64_t label = lp[i];
          if (label < 0 || label >= d.C) {
            bad.store(true, std::memory_order_relaxed);
            continue;
          }
          sum += softmax_row(xp + i * d.C, d.C, label, pp + i * d.C);
        }
        partial[b] = sum;
      }
    });
  }
  if (bad.load()) throw py::index_error("labels must lie in [0, C) with C = " + std::to_string(d.C));
  double total = 0.0;
  for (int64_t b = 0; b < blocks; ++b) total += partial[b];
  loss.mutable_data()[0] = static_cast<float>(total / d.N);
  return py::make_tuple(loss, probs);
}

// dlogits[i, j] = (probs[i, j] - [j == labels[i]]) / N
carray<float> softmax_cross_entropy_backward(const carray<float>& probs, const carray<int64_t>& labels) {
  const Dims d = check(probs, labels, "probs");
  carray<float> dlogits({d.N, d.C});
  const float* pp = probs.data();
  const int64_t* lp = labels.data();
  float* gp = dlogits.mutable_data();
  const float n = static_cast<float>(d.N);
  std::atomic<bool> bad{false};
  {
    py::gil_scoped_release release;
    run_rows(d.N, d.C, [&](int64_t begin, int64_t end) {
      for (int64_t i = begin; i < end; ++i) {
        const int64_t label = lp[i];
        if (label < 0 || label >= d.C) bad.store(true, std::memory_order_relaxed);
        for (int64_t j = 0; j < d.C; ++j)
          gp[i * d.C + j] = (pp[i * d.C + j] - (j == label ? 1.0f : 0.0f)) / n;
      }
    });
  }
  if (bad.load()) throw py::index_error("labels must lie in [0, C) with C = " + std::to_string(d.C));
  return dlogits;
}

// One row against soft targets t: writes probs, returns Σ_j t_j·(log s − (x_j − m)), each term from the
// shifted logit as softmax_row's.
double soft_row(const float* x, const float* t, int64_t C, float* p) {
  double s;
  const float m = shifted_exp(x, C, p, s);
  const float inv = static_cast<float>(1.0 / s);
  const double log_s = std::log(s);
  double row = 0.0;
  for (int64_t j = 0; j < C; ++j) {
    p[j] *= inv;
    row += static_cast<double>(t[j]) * (log_s - (static_cast<double>(x[j]) - static_cast<double>(m)));
  }
  return row;
}

void check_soft(const carray<float>& a, const carray<float>& targets, const std::optional<carray<float>>& w,
                const char* name) {
  if (a.ndim() != 2 || a.shape(0) < 1 || a.shape(1) < 1)
    throw py::value_error(std::string(name) + " must be 2-d (N,C) with N >= 1 and C >= 1");
  if (targets.ndim() != 2 || targets.shape(0) != a.shape(0) || targets.shape(1) != a.shape(1))
    throw py::value_error(std::string("targets must have the shape of ") + name);
  if (w && (w->ndim() != 1 || w->shape(0) != a.shape(0)))
    throw py::value_error("weights must have shape (N,) with N = " + std::to_string(a.shape(0)));
}

py::tuple softmax_cross_entropy_soft_forward(const carray<float>& logits, const carray<float>& targets,
                                             const std::optional<carray<float>>& weights) {
  check_soft(logits, targets, weights, "logits");
  const int64_t N = logits.shape(0), C = logits.shape(1);
  carray<float> loss(std::vector<py::ssize_t>{});
  carray<float> probs({N, C});
  const float *xp = logits.data(), *tp = targets.data(), *wp = weights ? weights->data() : nullptr;
  float* pp = probs.mutable_data();
  std::array<double, kBlocks> partial{};
  const int64_t blocks = std::min(N, kBlocks);
  {
    py::gil_scoped_release release;
    run_rows(blocks, N / blocks * C, [&](int64_t begin, int64_t end) {
      for (int64_t b = begin; b < end; ++b) {
        double sum = 0.0;
        for (int64_t i = N * b / blocks; i < N * (b + 1) / blocks; ++i) {
          const double row = soft_row(xp + i * C, tp + i * C, C, pp + i * C);
          sum += wp ? static_cast<double>(wp[i]) * row : row;
        }
        partial[b] = sum;
      }
    });
  }
  double total = 0.0;
  for (int64_t b = 0; b < blocks; ++b) total += partial[b];
  loss.mutable_data()[0] = static_cast<float>(total / N);
  return py::make_tuple(loss, probs);
}

carray<float> softmax_cross_entropy_soft_backward(const carray<float>& probs, const carray<float>& targets,
                                                  const std::optional<carray<float>>& weights) {
  check_soft(probs, targets, weights, "probs");
  const int64_t N = probs.shape(0), C = probs.shape(1);
  carray<float> dlogits({N, C});
  const float *pp = probs.data(), *tp = targets.data(), *wp = weights ? weights->data() : nullptr;
  float* gp = dlogits.mutable_data();
  {
    py::gil_scoped_release release;
    run_rows(N, C, [&](int64_t begin, int64_t end) {
      for (int64_t i = begin; i < end; ++i) {
        const float* t = tp + i * C;
        float total = 0.0f;
        for (int64_t j = 0; j < C; ++j) total += t[j];
        const float scale = (wp ? wp[i] : 1.0f) / static_cast<float>(N);
        for (int64_t j = 0; j < C; ++j) gp[i * C + j] = (pp[i * C + j] * total - t[j]) * scale;
      }
    });
  }
  return dlogits;
}

}  // namespace

void bind_loss(py::module_& m) {
  m.def("softmax_cross_entropy_forward", &softmax_cross_entropy_forward, py::arg("logits"), py::arg("labels"),
        "logits (N,C), labels int64 (N,) -> (mean loss 0-d float32, probs (N,C)).");
  m.def("softmax_cross_entropy_backward", &softmax_cross_entropy_backward, py::arg("probs"),
        py::arg("labels"), "probs (N,C), labels int64 (N,) -> dlogits (N,C) = (probs - onehot)/N.");
  m.def("softmax_cross_entropy_soft_forward", &softmax_cross_entropy_soft_forward, py::arg("logits"),
        py::arg("targets"), py::arg("weights") = py::none(),
        "logits, targets (N,C), weights (N,) | None -> (Σ w·row loss / N as a 0-d float32, probs (N,C)).");
  m.def("softmax_cross_entropy_soft_backward", &softmax_cross_entropy_soft_backward, py::arg("probs"),
        py::arg("targets"), py::arg("weights") = py::none(),
        "probs, targets (N,C), weights (N,) | None -> dlogits (N,C) = w·(Σt·probs - targets)/N.");
}

}  // namespace cnnkern
