// deepalign native kernels: an N-API addon with SIMD (AVX+FMA where the build machine has them) and
// a small thread pool. Kernels read and write caller-owned memory in place (the wasm backend's heap, or
// cpu tensors' TypedArrays): no copies cross the JS boundary.
//
// sgemm: C[b] = op(A[b]) x op(B[b]) for a list of batch offsets, op = optional transpose.
// Layout: packed B panels of NR=16 columns ([k][16], zero-padded), packed A panels of MR=6 rows
// ([k][6]); a 6x16 micro-kernel keeps 12 ymm accumulators. Threads split (batch, row-block) tasks.
//
// Threads: a small pool of our own instead of OpenMP. On a shared machine OpenMP's barriers wait
// for a thread the OS has descheduled (a 2-thread GEMM fell to 5 GFLOP/s from 120). Here tasks are
// claimed dynamically, the calling thread claims them too, and nothing waits for a worker that has
// not started a task: a busy core costs at most the one task its thread holds.
#include <node_api.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <condition_variable>
#include <cstdint>
#include <cstring>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

#if defined(__AVX__) && defined(__FMA__)
#include <immintrin.h>
#define DA_SIMD "avx+fma"
#elif defined(__AVX__)
#include <immintrin.h>
#define DA_SIMD "avx"
#else
#define DA_SIMD "scalar"
#endif

namespace {

constexpr int MR = 6;
constexpr int NR = 16;

struct Operand {
  const float* base;
  bool trans;
  // element (i, p) of op(A) for A [m,k] (or [k,m] when transposed); same shape logic for B.
};

// Packs rows [i0, i0+rows) of op(A) (m x k) into MR-row panels: panel[p*MR + r].
void pack_a(const float* a, bool trans, int m, int k, int i0, int rows, float* out) {
  for (int r0 = 0; r0 < rows; r0 += MR) {
    const int rr = std::min(MR, rows - r0);
    float* panel = out + (size_t)r0 * k;
    for (int p = 0; p < k; p++) {
      for (int r = 0; r < MR; r++) {
        float v = 0.f;
        if (r < rr) {
          const int i = i0 + r0 + r;
          v = trans ? a[(size_t)p * m + i] : a[(size_t)i * k + p];
        }
        panel[p * MR + r] = v;
      }
    }
  }
}

// Packs op(B) (k x n) into NR-column panels: panel j0 holds [p][NR].
// Packs column panels [panel_begin, panel_end) of op(B) (k x n); panel j0/NR holds [p][NR].
void pack_b(const float* b, bool trans, int k, int n, float* out, int panel_begin, int panel_end) {
  for (int panel_index = panel_begin; panel_index < panel_end; panel_index++) {
    const int j0 = panel_index * NR;
    const int cols = std::min(NR, n - j0);
    float* panel = out + (size_t)j0 * k;
    if (!trans && cols == NR) {
      for (int p = 0; p < k; p++) std::memcpy(panel + p * NR, b + (size_t)p * n + j0, NR * sizeof(float));
      continue;
    }
    if (cols < NR) std::memset(panel, 0, sizeof(float) * (size_t)k * NR);
    if (trans) {
      // B is [n, k]: read each of the panel's rows contiguously.
      for (int c = 0; c < cols; c++) {
        const float* row = b + (size_t)(j0 + c) * k;
        for (int p = 0; p < k; p++) panel[p * NR + c] = row[p];
      }
    } else {
      for (int p = 0; p < k; p++)
        for (int c = 0; c < cols; c++) panel[p * NR + c] = b[(size_t)p * n + j0 + c];
    }
  }
}

// C tile (rows x cols, row stride ldc) = Apanel (k x MR) x Bpanel (k x NR).
inline void micro_kernel(int k, const float* ap, const float* bp, float* c, int ldc, int rows, int cols) {
#if defined(__AVX__)
  __m256 c00 = _mm256_setzero_ps(), c01 = _mm256_setzero_ps();
  __m256 c10 = _mm256_setzero_ps(), c11 = _mm256_setzero_ps();
  __m256 c20 = _mm256_setzero_ps(), c21 = _mm256_setzero_ps();
  __m256 c30 = _mm256_setzero_ps(), c31 = _mm256_setzero_ps();
  __m256 c40 = _mm256_setzero_ps(), c41 = _mm256_setzero_ps();
  __m256 c50 = _mm256_setzero_ps(), c51 = _mm256_setzero_ps();
  for (int p = 0; p < k; p++) {
    const __m256 b0 = _mm256_loadu_ps(bp + p * NR);
    const __m256 b1 = _mm256_loadu_ps(bp + p * NR + 8);
    const float* a = ap + p * MR;
#if defined(__FMA__)
#define DA_FMA(acc, x, y) acc = _mm256_fmadd_ps(x, y, acc)
#else
#define DA_FMA(acc, x, y) acc = _mm256_add_ps(acc, _mm256_mul_ps(x, y))
#endif
    __m256 av = _mm256_broadcast_ss(a + 0); DA_FMA(c00, av, b0); DA_FMA(c01, av, b1);
    av = _mm256_broadcast_ss(a + 1); DA_FMA(c10, av, b0); DA_FMA(c11, av, b1);
    av = _mm256_broadcast_ss(a + 2); DA_FMA(c20, av, b0); DA_FMA(c21, av, b1);
    av = _mm256_broadcast_ss(a + 3); DA_FMA(c30, av, b0); DA_FMA(c31, av, b1);
    av = _mm256_broadcast_ss(a + 4); DA_FMA(c40, av, b0); DA_FMA(c41, av, b1);
    av = _mm256_broadcast_ss(a + 5); DA_FMA(c50, av, b0); DA_FMA(c51, av, b1);
#undef DA_FMA
  }
  if (rows == MR && cols == NR) {
    _mm256_storeu_ps(c + 0 * ldc, c00); _mm256_storeu_ps(c + 0 * ldc + 8, c01);
    _mm256_storeu_ps(c + 1 * ldc, c10); _mm256_storeu_ps(c + 1 * ldc + 8, c11);
    _mm256_storeu_ps(c + 2 * ldc, c20); _mm256_storeu_ps(c + 2 * ldc + 8, c21);
    _mm256_storeu_ps(c + 3 * ldc, c30); _mm256_storeu_ps(c + 3 * ldc + 8, c31);
    _mm256_storeu_ps(c + 4 * ldc, c40); _mm256_storeu_ps(c + 4 * ldc + 8, c41);
    _mm256_storeu_ps(c + 5 * ldc, c50); _mm256_storeu_ps(c + 5 * ldc + 8, c51);
    return;
  }
  alignas(32) float tile[MR * NR];
  _mm256_store_ps(tile + 0 * NR, c00); _mm256_store_ps(tile + 0 * NR + 8, c01);
  _mm256_store_ps(tile + 1 * NR, c10); _mm256_store_ps(tile + 1 * NR + 8, c11);
  _mm256_store_ps(tile + 2 * NR, c20); _mm256_store_ps(tile + 2 * NR + 8, c21);
  _mm256_store_ps(tile + 3 * NR, c30); _mm256_store_ps(tile + 3 * NR + 8, c31);
  _mm256_store_ps(tile + 4 * NR, c40); _mm256_store_ps(tile + 4 * NR + 8, c41);
  _mm256_store_ps(tile + 5 * NR, c50); _mm256_store_ps(tile + 5 * NR + 8, c51);
#else
  float tile[MR * NR] = {0};
  for (int p = 0; p < k; p++)
    for (int r = 0; r < MR; r++)
      for (int cc = 0; cc < NR; cc++) tile[r * NR + cc] += ap[p * MR + r] * bp[p * NR + cc];
#endif
  for (int r = 0; r < rows; r++) std::memcpy(c + (size_t)r * ldc, tile + r * NR, cols * sizeof(float));
}

int g_threads = 1;

int cores() { return std::max(1u, std::thread::hardware_concurrency()); }
int threads() { return g_threads; }

inline void cpu_relax() {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#endif
}

// Task pool. run(n, f) calls f(task) for task in [0, n) on the caller and the workers; returns
// when all n are done. Tasks are claimed with a CAS on (generation << 32 | next task), so a worker
// still looking at an old job can never claim a task of a new one.
class Pool {
 public:
  ~Pool() {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      stop_ = true;
    }
    cv_.notify_all();
    for (auto& t : workers_) t.join();
  }

  void run(int n, const std::function<void(int)>& f, int nthreads) {
    const int want = std::max(0, nthreads - 1);
    while ((int)workers_.size() < want) workers_.emplace_back([this] { worker(); });
    if (n <= 0) return;
    if (want == 0 || n == 1) {
      for (int t = 0; t < n; t++) f(t);
      return;
    }
    {
      std::lock_guard<std::mutex> lock(mutex_);
      job_ = &f;
      ntasks_ = n;
      done_.store(0, std::memory_order_relaxed);
      gen_++;
      state_.store((uint64_t)gen_ << 32, std::memory_order_release);
    }
    if (sleepers_.load(std::memory_order_acquire) > 0) cv_.notify_all();
    const uint32_t gen = gen_;
    work(gen, n, &f);
    // Wait only for tasks a worker has already claimed.
    for (long spins = 0; done_.load(std::memory_order_acquire) < n; spins++) {
      if (spins < 20000) cpu_relax();
      else std::this_thread::yield();
    }
  }

 private:
  bool claim(uint32_t gen, int n, int* task) {
    uint64_t s = state_.load(std::memory_order_acquire);
    for (;;) {
      if ((uint32_t)(s >> 32) != gen || (int)(uint32_t)s >= n) return false;
      if (state_.compare_exchange_weak(s, s + 1, std::memory_order_acq_rel)) {
        *task = (int)(uint32_t)s;
        return true;
      }
    }
  }

  // `f` is dereferenced only after a claim succeeds: a late worker may hold the pointer of a job
  // whose caller has already returned, but then every claim fails.
  void work(uint32_t gen, int n, const std::function<void(int)>* f) {
    int task;
    while (claim(gen, n, &task)) {
      (*f)(task);
      done_.fetch_add(1, std::memory_order_acq_rel);
    }
  }

  void worker() {
    uint32_t seen = 0;
    for (;;) {
      uint32_t gen;
      int n;
      const std::function<void(int)>* f;
      // Spin briefly for the next job (training calls GEMMs back to back), then sleep.
      bool got = false;
      for (int spins = 0; spins < 4000 && !got; spins++) {
        got = (uint32_t)(state_.load(std::memory_order_acquire) >> 32) != seen;
        if (!got) cpu_relax();
      }
      {
        std::unique_lock<std::mutex> lock(mutex_);
        if (!got) {
          sleepers_.fetch_add(1, std::memory_order_acq_rel);
          cv_.wait(lock, [&] { return stop_ || gen_ != seen; });
          sleepers_.fetch_sub(1, std::memory_order_acq_rel);
        }
        if (stop_) return;
        gen = gen_;
        n = ntasks_;
        f = job_;
      }
      seen = gen;
      work(gen, n, f);
    }
  }

  std::vector<std::thread> workers_;
  std::mutex mutex_;
  std::condition_variable cv_;
  bool stop_ = false;
  uint32_t gen_ = 0;
  int ntasks_ = 0;
  const std::function<void(int)>* job_ = nullptr;
  std::atomic<uint64_t> state_{0};
  std::atomic<int> done_{0};
  std::atomic<int> sleepers_{0};
};

Pool& pool() {
  static Pool* p = new Pool();  // never destroyed: workers may outlive static destruction order
  return *p;
}

// Batched product; offsets are element offsets of each batch's A, B and C inside a, b, c.
// Few rows (decoding at batch 1: m <= 4): packing B would cost more than the
// product, so B is read in place, once per block of 4 rows of A. transposeB (HF's [out, in]
// weights): dot products along contiguous k; otherwise rows of C accumulate rows of B. Rows of A
// are gathered first when A is transposed.
constexpr int SMALL_M = 4;

#if defined(__AVX__)
inline float hsum(__m256 x) {
  alignas(32) float lanes[8];
  _mm256_store_ps(lanes, x);
  return ((lanes[0] + lanes[1]) + (lanes[2] + lanes[3])) + ((lanes[4] + lanes[5]) + (lanes[6] + lanes[7]));
}
#endif

// c[r * ldc + j] = dot(a_r, b_j) for r < R (<= 4), j < n; a rows are contiguous with stride k.
// Two columns at a time: 2 + R loads feed 2R FMAs; R is a template parameter so the 2R
// accumulators stay in registers.
template <int R>
void dots_block(const float* a, const float* b, float* c, int ldc, int n, int k) {
  int j = 0;
#if defined(__AVX__)
  const int k8 = k / 8 * 8;
  for (; j + 2 <= n; j += 2) {
    const float* b0 = b + (size_t)j * k;
    const float* b1 = b0 + k;
    __m256 acc0[R], acc1[R];
    for (int r = 0; r < R; r++) acc0[r] = acc1[r] = _mm256_setzero_ps();
    for (int p = 0; p < k8; p += 8) {
      const __m256 v0 = _mm256_loadu_ps(b0 + p), v1 = _mm256_loadu_ps(b1 + p);
      for (int r = 0; r < R; r++) {
        const __m256 av = _mm256_loadu_ps(a + (size_t)r * k + p);
#if defined(__FMA__)
        acc0[r] = _mm256_fmadd_ps(av, v0, acc0[r]);
        acc1[r] = _mm256_fmadd_ps(av, v1, acc1[r]);
#else
        acc0[r] = _mm256_add_ps(acc0[r], _mm256_mul_ps(av, v0));
        acc1[r] = _mm256_add_ps(acc1[r], _mm256_mul_ps(av, v1));
#endif
      }
    }
    for (int r = 0; r < R; r++) {
      float s0 = hsum(acc0[r]), s1 = hsum(acc1[r]);
      for (int p = k8; p < k; p++) {
        s0 += a[(size_t)r * k + p] * b0[p];
        s1 += a[(size_t)r * k + p] * b1[p];
      }
      c[(size_t)r * ldc + j] = s0;
      c[(size_t)r * ldc + j + 1] = s1;
    }
  }
#endif
  for (; j < n; j++) {
    const float* bj = b + (size_t)j * k;
    for (int r = 0; r < R; r++) {
      float sum = 0.f;
      for (int p = 0; p < k; p++) sum += a[(size_t)r * k + p] * bj[p];
      c[(size_t)r * ldc + j] = sum;
    }
  }
}

void dots_rows(const float* a, int rows, const float* b, float* c, int ldc, int n, int k) {
  switch (rows) {
    case 1: return dots_block<1>(a, b, c, ldc, n, k);
    case 2: return dots_block<2>(a, b, c, ldc, n, k);
    case 3: return dots_block<3>(a, b, c, ldc, n, k);
    default: return dots_block<4>(a, b, c, ldc, n, k);
  }
}

void small_m_product(const float* a, const float* b, float* c, int m, int n, int k, bool ta, bool tb, float* rows_buf) {
  for (int i0 = 0; i0 < m; i0 += 4) {
    const int rows = std::min(4, m - i0);
    const float* ai = a + (size_t)i0 * k;
    if (ta) {
      for (int r = 0; r < rows; r++)
        for (int p = 0; p < k; p++) rows_buf[(size_t)r * k + p] = a[(size_t)p * m + i0 + r];
      ai = rows_buf;
    }
    float* ci = c + (size_t)i0 * n;
    if (tb) {
      dots_rows(ai, rows, b, ci, n, n, k);
    } else {
      std::memset(ci, 0, sizeof(float) * (size_t)rows * n);
      for (int p = 0; p < k; p++) {
        const float* bp = b + (size_t)p * n;
        for (int r = 0; r < rows; r++) {
          const float x = ai[(size_t)r * k + p];
          float* cr = ci + (size_t)r * n;
          for (int j = 0; j < n; j++) cr[j] += x * bp[j];  // vectorised by the compiler
        }
      }
    }
  }
}

void sgemm_batched(const float* a, const float* b, float* c, const uint32_t* a_off, const uint32_t* b_off,
                   const uint32_t* c_off, int batch, int m, int n, int k, bool ta, bool tb) {
  if (k == 0) {
    for (int q = 0; q < batch; q++) std::memset(c + c_off[q], 0, sizeof(float) * (size_t)m * n);
    return;
  }
  if (m <= SMALL_M) {
    thread_local std::vector<float> row;
    if (ta && (int)row.size() < 4 * k) row.resize(4 * (size_t)k);
    for (int q = 0; q < batch; q++) small_m_product(a + a_off[q], b + b_off[q], c + c_off[q], m, n, k, ta, tb, row.data());
    return;
  }
  const int n_pad = (n + NR - 1) / NR * NR;
  // Distinct B operands are packed once each (attention shares none; broadcast weights share one).
  std::vector<uint32_t> distinct_b(b_off, b_off + batch);
  std::sort(distinct_b.begin(), distinct_b.end());
  distinct_b.erase(std::unique(distinct_b.begin(), distinct_b.end()), distinct_b.end());
  std::vector<int> b_slot(batch);
  for (int q = 0; q < batch; q++)
    b_slot[q] = (int)(std::lower_bound(distinct_b.begin(), distinct_b.end(), b_off[q]) - distinct_b.begin());
  const size_t b_panel_size = (size_t)k * n_pad;
  std::vector<float> packed_b(b_panel_size * distinct_b.size());

  const int nthreads = threads();
  const double flops = 2.0 * batch * m * n * k;
  // Below ~3 MFLOP (decoding-size products) the pool's hand-off costs more than a second core saves.
  const int use_threads = flops < 3e6 ? 1 : nthreads;
  // Row blocks: a multiple of MR; smaller when threaded so work spreads and a descheduled thread
  // holds back little.
  int mb = use_threads == 1 ? 192 : 48;
  mb = std::min(mb, (m + MR - 1) / MR * MR);
  const int m_blocks = (m + mb - 1) / mb;
  // Column blocks (multiples of NR) when row blocks alone would leave threads idle: a [128 x 1024]
  // x [1024 x 128] weight gradient has only 3 row blocks.
  int nb = n;
  if (use_threads > 1 && batch * m_blocks < 4 * use_threads) {
    const int want = (4 * use_threads + batch * m_blocks - 1) / (batch * m_blocks);
    nb = std::max(2 * NR, ((n + want - 1) / want + NR - 1) / NR * NR);
  }
  const int n_blocks = (n + nb - 1) / nb;
  const int tasks = batch * m_blocks * n_blocks;

  // Packing B is split into groups of column panels too: for decoding-size products (m = 16) it
  // costs as much as the product itself.
  const int panels = n_pad / NR;
  const int panel_groups = use_threads > 1 ? std::min(panels, 4 * use_threads) : 1;
  const int per_group = (panels + panel_groups - 1) / panel_groups;
  pool().run((int)distinct_b.size() * panel_groups, [&](int t) {
    const int s = t / panel_groups;
    const int g = t % panel_groups;
    pack_b(b + distinct_b[s], tb, k, n, packed_b.data() + (size_t)s * b_panel_size, g * per_group,
           std::min(panels, (g + 1) * per_group));
  }, use_threads);

  const size_t a_block = (size_t)k * ((mb + MR - 1) / MR * MR);
  pool().run(tasks, [&](int t) {
    thread_local std::vector<float> packed_a;
    if (packed_a.size() < a_block) packed_a.resize(a_block);
    const int q = t / (m_blocks * n_blocks);
    const int rest = t % (m_blocks * n_blocks);
    const int i0 = (rest / n_blocks) * mb;
    const int j_begin = (rest % n_blocks) * nb;
    const int j_end = std::min(n, j_begin + nb);
    const int rows = std::min(mb, m - i0);
    pack_a(a + a_off[q], ta, m, k, i0, rows, packed_a.data());
    const float* bp_all = packed_b.data() + b_slot[q] * b_panel_size;
    float* cq = c + c_off[q];
    for (int j0 = j_begin; j0 < j_end; j0 += NR) {
      const float* bp = bp_all + (size_t)j0 * k;
      const int cols = std::min(NR, n - j0);
      for (int r0 = 0; r0 < rows; r0 += MR) {
        micro_kernel(k, packed_a.data() + (size_t)r0 * k, bp, cq + (size_t)(i0 + r0) * n + j0, n,
                     std::min(MR, rows - r0), cols);
      }
    }
  }, use_threads);
}

// ---- N-API plumbing ---------------------------------------------------------------------------

#define NAPI_CALL(env, call)                                        \
  do {                                                              \
    if ((call) != napi_ok) {                                        \
      napi_throw_error(env, nullptr, "deepalign_native: " #call);   \
      return nullptr;                                               \
    }                                                               \
  } while (0)

bool float_data(napi_env env, napi_value v, float** data, size_t* length) {
  bool is_ta = false;
  napi_is_typedarray(env, v, &is_ta);
  if (is_ta) {
    napi_typedarray_type type;
    void* ptr;
    napi_value ab;
    size_t offset;
    if (napi_get_typedarray_info(env, v, &type, length, &ptr, &ab, &offset) != napi_ok) return false;
    if (type != napi_float32_array) return false;
    *data = static_cast<float*>(ptr);
    return true;
  }
  bool is_ab = false;
  napi_is_arraybuffer(env, v, &is_ab);
  if (!is_ab) return false;
  void* ptr;
  size_t bytes;
  if (napi_get_arraybuffer_info(env, v, &ptr, &bytes) != napi_ok) return false;
  *data = static_cast<float*>(ptr);
  *length = bytes / sizeof(float);
  return true;
}

bool u32_data(napi_env env, napi_value v, uint32_t** data, size_t* length) {
  napi_typedarray_type type;
  void* ptr;
  napi_value ab;
  size_t offset;
  bool is_ta = false;
  napi_is_typedarray(env, v, &is_ta);
  if (!is_ta || napi_get_typedarray_info(env, v, &type, length, &ptr, &ab, &offset) != napi_ok) return false;
  if (type != napi_uint32_array) return false;
  *data = static_cast<uint32_t*>(ptr);
  return true;
}

// sgemm(a, b, c, aOffsets, bOffsets, cOffsets, m, n, k, transposeA, transposeB)
// a, b, c: Float32Array or ArrayBuffer (may alias one heap); offsets: Uint32Array element offsets.
napi_value Sgemm(napi_env env, napi_callback_info info) {
  size_t argc = 11;
  napi_value argv[11];
  NAPI_CALL(env, napi_get_cb_info(env, info, &argc, argv, nullptr, nullptr));
  if (argc != 11) {
    napi_throw_type_error(env, nullptr, "sgemm: expected 11 arguments (a, b, c, aOff, bOff, cOff, m, n, k, tA, tB)");
    return nullptr;
  }
  float *a, *b, *c;
  size_t la, lb, lc;
  if (!float_data(env, argv[0], &a, &la) || !float_data(env, argv[1], &b, &lb) || !float_data(env, argv[2], &c, &lc)) {
    napi_throw_type_error(env, nullptr, "sgemm: a, b and c must be Float32Arrays or ArrayBuffers");
    return nullptr;
  }
  uint32_t *ao, *bo, *co;
  size_t na, nb, nc;
  if (!u32_data(env, argv[3], &ao, &na) || !u32_data(env, argv[4], &bo, &nb) || !u32_data(env, argv[5], &co, &nc) ||
      na != nb || na != nc) {
    napi_throw_type_error(env, nullptr, "sgemm: offsets must be three Uint32Arrays of equal length");
    return nullptr;
  }
  int32_t m, n, k;
  bool ta, tb;
  NAPI_CALL(env, napi_get_value_int32(env, argv[6], &m));
  NAPI_CALL(env, napi_get_value_int32(env, argv[7], &n));
  NAPI_CALL(env, napi_get_value_int32(env, argv[8], &k));
  NAPI_CALL(env, napi_get_value_bool(env, argv[9], &ta));
  NAPI_CALL(env, napi_get_value_bool(env, argv[10], &tb));
  if (m < 0 || n < 0 || k < 0) {
    napi_throw_range_error(env, nullptr, "sgemm: m, n, k must be non-negative");
    return nullptr;
  }
  const size_t sa = (size_t)m * k, sb = (size_t)k * n, sc = (size_t)m * n;
  for (size_t q = 0; q < na; q++) {
    if (ao[q] + sa > la || bo[q] + sb > lb || co[q] + sc > lc) {
      napi_throw_range_error(env, nullptr, "sgemm: an operand offset runs past the end of its buffer");
      return nullptr;
    }
  }
  sgemm_batched(a, b, c, ao, bo, co, (int)na, m, n, k, ta, tb);
  return nullptr;
}

// AdamW for one parameter, every operation rounded to float32 in the order of lib/train's tf-op
// composition (the build uses -ffp-contract=off, so no FMA contraction), hence bit-identical to it.
// consts: B1, C1 = 1-b1, B2, C2 = 1-b2, D = 1-lr*wd, S2 = sqrt(1-b2^t), EPS, LRB = lr/(1-b1^t).
void adamw_loop(const float* p, const float* g, const float* m, const float* v, float* p_out, float* m_out,
                float* v_out, size_t n, const float* k, bool decay) {
  const float B1 = k[0], C1 = k[1], B2 = k[2], C2 = k[3], D = k[4], S2 = k[5], EPS = k[6], LRB = k[7];
  size_t i = 0;
#if defined(__AVX__)
  // The same operations in the same order, 8 lanes at a time (each correctly rounded, no FMA).
  const __m256 b1 = _mm256_set1_ps(B1), c1 = _mm256_set1_ps(C1), b2 = _mm256_set1_ps(B2), c2 = _mm256_set1_ps(C2);
  const __m256 d = _mm256_set1_ps(D), s2 = _mm256_set1_ps(S2), eps = _mm256_set1_ps(EPS), lrb = _mm256_set1_ps(LRB);
  for (; i + 8 <= n; i += 8) {
    const __m256 gi = _mm256_loadu_ps(g + i);
    const __m256 m1 = _mm256_add_ps(_mm256_mul_ps(_mm256_loadu_ps(m + i), b1), _mm256_mul_ps(gi, c1));
    const __m256 v1 = _mm256_add_ps(_mm256_mul_ps(_mm256_loadu_ps(v + i), b2), _mm256_mul_ps(_mm256_mul_ps(gi, gi), c2));
    const __m256 pi = _mm256_loadu_ps(p + i);
    const __m256 decayed = decay ? _mm256_mul_ps(pi, d) : pi;
    const __m256 denom = _mm256_add_ps(_mm256_div_ps(_mm256_sqrt_ps(v1), s2), eps);
    const __m256 step = _mm256_mul_ps(_mm256_div_ps(m1, denom), lrb);
    _mm256_storeu_ps(m_out + i, m1);
    _mm256_storeu_ps(v_out + i, v1);
    _mm256_storeu_ps(p_out + i, _mm256_sub_ps(decayed, step));
  }
#endif
  for (; i < n; i++) {
    const float gi = g[i];
    const float m1 = m[i] * B1 + gi * C1;
    const float gg = gi * gi;
    const float v1 = v[i] * B2 + gg * C2;
    const float decayed = decay ? p[i] * D : p[i];
    const float denom = std::sqrt(v1) / S2 + EPS;
    const float step = (m1 / denom) * LRB;
    m_out[i] = m1;
    v_out[i] = v1;
    p_out[i] = decayed - step;
  }
}

// adamw([p, g, m, v, pOut, mOut, vOut], offsets Uint32Array(7), n, consts Float32Array(8), decay)
napi_value AdamW(napi_env env, napi_callback_info info) {
  size_t argc = 5;
  napi_value argv[5];
  NAPI_CALL(env, napi_get_cb_info(env, info, &argc, argv, nullptr, nullptr));
  if (argc != 5) {
    napi_throw_type_error(env, nullptr, "adamw: expected 5 arguments (arrays, offsets, n, consts, decay)");
    return nullptr;
  }
  float* ptr[7];
  size_t len[7];
  for (uint32_t i = 0; i < 7; i++) {
    napi_value el;
    if (napi_get_element(env, argv[0], i, &el) != napi_ok || !float_data(env, el, &ptr[i], &len[i])) {
      napi_throw_type_error(env, nullptr, "adamw: arrays must be 7 Float32Arrays or ArrayBuffers (p, g, m, v, pOut, mOut, vOut)");
      return nullptr;
    }
  }
  uint32_t* off;
  size_t noff;
  if (!u32_data(env, argv[1], &off, &noff) || noff != 7) {
    napi_throw_type_error(env, nullptr, "adamw: offsets must be a Uint32Array of 7 element offsets");
    return nullptr;
  }
  int64_t n;
  NAPI_CALL(env, napi_get_value_int64(env, argv[2], &n));
  float* consts;
  size_t nconst;
  if (!float_data(env, argv[3], &consts, &nconst) || nconst != 8) {
    napi_throw_type_error(env, nullptr, "adamw: consts must be a Float32Array of 8 values");
    return nullptr;
  }
  bool decay;
  NAPI_CALL(env, napi_get_value_bool(env, argv[4], &decay));
  for (int i = 0; i < 7; i++) {
    if (n < 0 || off[i] + (size_t)n > len[i]) {
      napi_throw_range_error(env, nullptr, "adamw: an operand runs past the end of its buffer");
      return nullptr;
    }
  }
  adamw_loop(ptr[0] + off[0], ptr[1] + off[1], ptr[2] + off[2], ptr[3] + off[3], ptr[4] + off[4], ptr[5] + off[5],
             ptr[6] + off[6], (size_t)n, consts, decay);
  return nullptr;
}

// Cross-entropy over rows of logits [n, V]: nll[i] = lse[i] - l[i, t[i]] (lse max-shifted, summed
// in double), and its gradient g[i, j] = (exp(l[i, j] - lse[i]) - [j == t[i]]) * dy[i].
// Returns the first bad target's position, or -1.
long cross_entropy(const float* l, const int32_t* t, float* nll, float* lse, long n, int V) {
  for (long i = 0; i < n; i++) {
    const float* row = l + i * V;
    float m = -INFINITY;
    for (int j = 0; j < V; j++) m = std::max(m, row[j]);
    double sum = 0;
    for (int j = 0; j < V; j++) sum += std::exp(row[j] - m);
    if (t[i] < 0 || t[i] >= V) return i;
    const float s = (float)(std::log(sum) + m);
    lse[i] = s;
    nll[i] = s - row[t[i]];
  }
  return -1;
}

void cross_entropy_grad(const float* l, const float* lse, const int32_t* t, const float* dy, float* g, long n, int V) {
  for (long i = 0; i < n; i++) {
    const float* row = l + i * V;
    float* grow = g + i * V;
    const float s = lse[i], d = dy[i];
    for (int j = 0; j < V; j++) grow[j] = std::exp(row[j] - s) * d;
    grow[t[i]] -= d;
  }
}

// crossEntropy(heap, offsets Uint32Array [logits, targets, nll, lse], n, V) -> -1 or bad row
// crossEntropyGrad(heap, offsets Uint32Array [logits, lse, targets, dy, out], n, V)
// Offsets are element offsets (4-byte elements; targets are int32) into one heap buffer.
napi_value CrossEntropyImpl(napi_env env, napi_callback_info info, bool grad) {
  size_t argc = 4;
  napi_value argv[4];
  NAPI_CALL(env, napi_get_cb_info(env, info, &argc, argv, nullptr, nullptr));
  float* heap;
  size_t len;
  uint32_t* off;
  size_t noff;
  const size_t want = grad ? 5 : 4;
  if (argc != 4 || !float_data(env, argv[0], &heap, &len) || !u32_data(env, argv[1], &off, &noff) || noff != want) {
    napi_throw_type_error(env, nullptr, grad ? "crossEntropyGrad: expected (heap, offsets[5], n, V)" : "crossEntropy: expected (heap, offsets[4], n, V)");
    return nullptr;
  }
  int64_t n;
  int32_t V;
  NAPI_CALL(env, napi_get_value_int64(env, argv[2], &n));
  NAPI_CALL(env, napi_get_value_int32(env, argv[3], &V));
  // Operand sizes in elements: logits n*V; targets, nll, lse, dy n; gradient n*V.
  const size_t nv = (size_t)n * (size_t)V;
  const size_t fwd_sizes[4] = {nv, (size_t)n, (size_t)n, (size_t)n};
  const size_t grad_sizes[5] = {nv, (size_t)n, (size_t)n, (size_t)n, nv};
  for (size_t i = 0; i < want; i++) {
    const size_t size = grad ? grad_sizes[i] : fwd_sizes[i];
    if (n < 0 || V < 1 || off[i] + size > len) {
      napi_throw_range_error(env, nullptr, "crossEntropy: an operand runs past the end of its buffer");
      return nullptr;
    }
  }
  napi_value result;
  if (grad) {
    cross_entropy_grad(heap + off[0], heap + off[1], reinterpret_cast<const int32_t*>(heap + off[2]), heap + off[3], heap + off[4], n, V);
    NAPI_CALL(env, napi_get_undefined(env, &result));
  } else {
    const long bad = cross_entropy(heap + off[0], reinterpret_cast<const int32_t*>(heap + off[1]), heap + off[2], heap + off[3], n, V);
    NAPI_CALL(env, napi_create_int64(env, bad, &result));
  }
  return result;
}

napi_value CrossEntropy(napi_env env, napi_callback_info info) { return CrossEntropyImpl(env, info, false); }
napi_value CrossEntropyGrad(napi_env env, napi_callback_info info) { return CrossEntropyImpl(env, info, true); }

napi_value SetThreads(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  NAPI_CALL(env, napi_get_cb_info(env, info, &argc, argv, nullptr, nullptr));
  int32_t t = 0;
  if (argc < 1 || napi_get_value_int32(env, argv[0], &t) != napi_ok || t < 1) {
    napi_throw_range_error(env, nullptr, "setThreads: expected a positive integer");
    return nullptr;
  }
  g_threads = t;
  return nullptr;
}

napi_value Info(napi_env env, napi_callback_info) {
  napi_value obj, v;
  NAPI_CALL(env, napi_create_object(env, &obj));
  NAPI_CALL(env, napi_create_int32(env, threads(), &v));
  NAPI_CALL(env, napi_set_named_property(env, obj, "threads", v));
  NAPI_CALL(env, napi_create_int32(env, cores(), &v));
  NAPI_CALL(env, napi_set_named_property(env, obj, "cores", v));
  NAPI_CALL(env, napi_create_string_utf8(env, DA_SIMD, NAPI_AUTO_LENGTH, &v));
  NAPI_CALL(env, napi_set_named_property(env, obj, "simd", v));
  return obj;
}

napi_value Init(napi_env env, napi_value exports) {
  napi_property_descriptor props[] = {
      {"sgemm", nullptr, Sgemm, nullptr, nullptr, nullptr, napi_default, nullptr},
      {"adamw", nullptr, AdamW, nullptr, nullptr, nullptr, napi_default, nullptr},
      {"crossEntropy", nullptr, CrossEntropy, nullptr, nullptr, nullptr, napi_default, nullptr},
      {"crossEntropyGrad", nullptr, CrossEntropyGrad, nullptr, nullptr, nullptr, napi_default, nullptr},
      {"setThreads", nullptr, SetThreads, nullptr, nullptr, nullptr, napi_default, nullptr},
      {"info", nullptr, Info, nullptr, nullptr, nullptr, napi_default, nullptr},
  };
  napi_define_properties(env, exports, sizeof(props) / sizeof(props[0]), props);
  return exports;
}

}  // namespace

NAPI_MODULE(NODE_GYP_MODULE_NAME, Init)
