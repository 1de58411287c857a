// dx of the direct depthwise conv (conv_direct.h) by gathering: every dx element is one sum over the taps
// that reach it, taken in registers by the forward's row kernel and stored once. (Scattering each dy row
// into a dx frame, tap by tap, stored every partial sum; successive taps overlap by one float, so each load
// waited on the store before it: stride-1 dx took twice the forward. Numbers in the commit.)
// dx pixel (h, w), h = i*sh + a, w = j*sw + b, receives tap (r, s) iff (a + pt - r*dh) and (b + pl - s*dw)
// are multiples of sh and sw, from dy[i + oy][j + ox], oy = (a + pt - r*dh) / sh, ox = (b + pl - s*dw) / sw.
// So each phase (a, b) of dx is a unit-stride correlation of dy with the taps of that phase: rows of
// contiguous dy runs, read from a zero-bordered copy of the dy plane (the frame).
#include <algorithm>
#include <array>
#include <vector>

#include "kernels/conv_direct.h"
#include "kernels/gemm.h"
#include "runtime/common.h"

namespace cnnkern {

namespace {

struct Phase {
  int64_t a, b, rows, cols;   // dx rows a, a+sh, ... (rows of them) and columns b, b+sw, ... (cols)
  std::vector<int64_t> off;   // per tap of the phase: frame offset of its first float for i = j = 0
  std::vector<int64_t> taps;  // the taps' indices r*S + s into the plane's weights
};

struct Plan {
  int64_t ut = 0, ul = 0, Hd = 0, Wd = 0;  // frame[u][v] = dy[u - ut][v - ul], 0 outside dy
  std::vector<Phase> phases;

  explicit Plan(const ConvGeom& g) {
    const auto mod = [](int64_t v, int64_t m) { return ((v % m) + m) % m; };
    int64_t lo_y = 0, hi_y = 0, lo_x = 0, hi_x = 0;
    std::vector<std::array<int64_t, 2>> oxy;  // per phase and tap: (oy, ox), offsets filled in below
    for (int64_t a = 0; a < g.sh; ++a)
      for (int64_t b = 0; b < g.sw; ++b) {
        Phase ph{a,  b, a < g.H ? (g.H - a + g.sh - 1) / g.sh : 0, b < g.W ? (g.W - b + g.sw - 1) / g.sw : 0,
                 {}, {}};
        for (int64_t r = 0; r < g.R; ++r)
          for (int64_t s = 0; s < g.S; ++s) {
            const int64_t ny = a + g.pt - r * g.dh, nx = b + g.pl - s * g.dw;
            if (mod(ny, g.sh) || mod(nx, g.sw)) continue;
            const int64_t oy = ny / g.sh, ox = nx / g.sw;
            ph.taps.push_back(r * g.S + s);
            oxy.push_back({oy, ox});
            // the rows and columns this tap reads: [oy, oy + rows) and [ox, ox + cols)
            lo_y = std::min(lo_y, oy), hi_y = std::max(hi_y, oy + ph.rows);
            lo_x = std::min(lo_x, ox), hi_x = std::max(hi_x, ox + ph.cols);
          }
        phases.push_back(std::move(ph));
      }
    ut = -lo_y, ul = -lo_x;
    Hd = ut + std::max(g.P, hi_y), Wd = ul + std::max(g.Q, hi_x);
    size_t k = 0;
    for (Phase& ph : phases)
      for (size_t t = 0; t < ph.taps.size(); ++t, ++k)
        ph.off.push_back((oxy[k][0] + ut) * Wd + oxy[k][1] + ul);
  }
};

void interleave_row(const float* e, int64_t ne, const float* o, int64_t no, float* d) {
#ifdef CNNKERN_X86
  if (simd_level() != Simd::scalar) return avx2::interleave2(e, ne, o, no, d);
#endif
  for (int64_t j = 0; j < no; ++j) d[2 * j] = e[j], d[2 * j + 1] = o[j];
  if (ne > no) d[2 * no] = e[no];
}

}  // namespace

void conv_direct_dx(const float* dy, const float* w, float* dx, const ConvGeom& g) {
  const Plan plan(g);
  const int64_t T = g.R * g.S, P = g.P, Q = g.Q, HW = g.H * g.W, Wd = plan.Wd;
  parallel_for(g.N * g.C, [&](int64_t i0, int64_t i1) {
    thread_local std::vector<float> frbuf, tmpbuf, wbuf;
    float* fr = grow(frbuf, plan.Hd * Wd);
    float* tmp = grow(tmpbuf, HW);  // a row phase's dx rows, column phases side by side (strided widths)
    float* wt = grow(wbuf, T);
    std::fill(fr, fr + plan.Hd * Wd, 0.0f);  // the border stays zero; the interior is rewritten per plane
    for (int64_t i = i0; i < i1; ++i) {
      const int64_t c = i % g.C;
      for (int64_t p = 0; p < P; ++p)
        std::copy(dy + (i * P + p) * Q, dy + (i * P + p + 1) * Q, fr + (plan.ut + p) * Wd + plan.ul);
      float* dxc = dx + i * HW;
      // Phase ph's rows into out (rows ldo apart).
      auto phase_plane = [&](const Phase& ph, float* out, int64_t ldo) {
        const int64_t nt = static_cast<int64_t>(ph.taps.size());
        for (int64_t t = 0; t < nt; ++t) wt[t] = w[c * T + ph.taps[t]];
        dwconv_plane(ph.rows, ph.cols, nt, fr, ph.off.data(), Wd, wt, 0.0f, out, ldo);
      };
      for (int64_t a = 0; a < g.sh; ++a) {
        const Phase* ph = plan.phases.data() + a * g.sw;  // the phases of rows a, a+sh, ...
        if (g.sw == 1) {                                  // whole rows of dx
          phase_plane(ph[0], dxc + a * g.W, g.sh * g.W);
          continue;
        }
        // each column phase into its own columns of tmp's rows (g.W floats apart), then interleaved into dx
        for (int64_t b = 0, at = 0; b < g.sw; at += ph[b].cols, ++b) phase_plane(ph[b], tmp + at, g.W);
        for (int64_t y = 0; y < ph->rows; ++y) {
          float* out = dxc + (y * g.sh + a) * g.W;
          const float* r = tmp + y * g.W;
          if (g.sw == 2) {
            interleave_row(r, ph[0].cols, r + ph[0].cols, ph[1].cols, out);
          } else {
            for (int64_t b = 0, at = 0; b < g.sw; at += ph[b].cols, ++b)
              for (int64_t j = 0; j < ph[b].cols; ++j) out[j * g.sw + b] = r[at + j];
          }
        }
      }
    }
  });
}

}  // namespace cnnkern
