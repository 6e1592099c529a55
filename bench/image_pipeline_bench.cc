// datafeed-bench pipeline --preset imagenet-train: the producer on decoded
// images against the bare decode+resize loop, measured in the same run.
//
// Data: an ImageNet-like folder generated here (--images 1200 JPEGs at
// quality 90 in 10 class folders, sizes around 500x375 in both orientations
// and a few other aspect ratios, photo-like content: gradients, hard-edged
// shapes, texture and noise; fixed seed), or --image-folder DIR. The files
// are read from the page cache by both sides (a first pass warms it).
//
// datafeed: the real Producer (ImageFolderDataset, the preset's pipeline,
// --batch 128, shuffled, endless epochs, --decode exact|reduced) into an
// inproc:// transport with a consumer thread that drops every batch;
// samples/s as the consumer receives them after the first batch (see
// RunProducer).
//
// Bare loop (the limit): N std::threads, each taking a contiguous share of
// the same files, per sample: read the file (open/read/close), TurboJPEG
// tjDecompress2 to RGB at full size (what PIL's decode is), the preset's
// geometry with OpenCV -- imagenet-train: a random crop of the same
// distribution (area 8..100 %, ratio 3/4..4/3) cv::resize'd to 224x224 with
// --bare-interp (area: OpenCV's antialiased shrink, the counterpart of PIL's
// antialiased bilinear; linear: no antialiasing, cheaper) and a 50 % flip;
// imagenet-eval: the shorter side cv::resize'd to 256, then the central
// 224x224 -- then one pass of per-channel tables to normalised float32 CHW in
// a reused batch buffer, the label into a label array. No datafeed code.
//
// --torchvision: torchvision_pipeline.py --image-folder times
// torchvision.datasets.ImageFolder(dir, transform=<the preset>)[i] (PIL
// open + convert("RGB") + the transforms) in one process with
// torch.set_num_threads(1): the per-core rate of a DataLoader worker.
// x_torchvision = datafeed's rate per thread / that.
//
// --scaling: datafeed and the bare loop also with 1 thread; scaling = N
// threads / 1 thread for each.
#include <fcntl.h>
#include <sys/stat.h>
#include <turbojpeg.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include <opencv2/core.hpp>
#include <opencv2/imgproc.hpp>

#include "bench_util.h"
#include "datafeed/producer/sample_rng.h"
#include "pipeline_bench.h"
#include "datafeed/tools/json_line.h"

#ifndef DATAFEED_BENCH_SOURCE_DIR
#define DATAFEED_BENCH_SOURCE_DIR "bench"
#endif

namespace datafeed::bench {
namespace {

constexpr float kMean[3] = {0.485f, 0.456f, 0.406f};
constexpr float kStd[3] = {0.229f, 0.224f, 0.225f};

int Fail(const std::string& what, const Status& st) {
  std::fprintf(stderr, "datafeed-bench pipeline: %s: %s\n", what.c_str(), st.ToString().c_str());
  return 1;
}

// ---- the data set -------------------------------------------------------------

// One photo-like h x w RGB image from `rng`: a few smooth gradients, hard-
// edged discs and bars, fine texture and noise (JPEG at quality 90 then
// compresses to about what photographs of this size do).
std::vector<uint8_t> MakePhoto(int h, int w, std::mt19937_64& rng) {
  std::vector<uint8_t> img(static_cast<size_t>(h) * w * 3);
  auto u = [&](int lo, int hi) { return lo + static_cast<int>(rng() % static_cast<uint64_t>(hi - lo + 1)); };
  const int gy[3] = {u(-60, 60), u(-60, 60), u(-60, 60)}, gx[3] = {u(-60, 60), u(-60, 60), u(-60, 60)};
  const int base[3] = {u(40, 200), u(40, 200), u(40, 200)};
  struct Disc { int y, x, r2, c[3]; };
  std::vector<Disc> discs(static_cast<size_t>(u(2, 6)));
  for (Disc& d : discs) d = {u(0, h), u(0, w), u(200, h * w / 6 + 201), {u(-90, 90), u(-90, 90), u(-90, 90)}};
  const int period = u(3, 9), texture = u(4, 14);
  for (int y = 0; y < h; ++y) {
    for (int x = 0; x < w; ++x) {
      int add[3] = {0, 0, 0};
      for (const Disc& d : discs) {
        if ((y - d.y) * (y - d.y) + (x - d.x) * (x - d.x) < d.r2) {
          for (int c = 0; c < 3; ++c) add[c] += d.c[c];
        }
      }
      const int tex = ((x / period + y / period) % 2) * texture;
      const uint64_t r = rng();
      for (int c = 0; c < 3; ++c) {
        const int noise = static_cast<int>((r >> (8 * c)) & 31) - 16;
        const int v = base[c] + gy[c] * y / h + gx[c] * x / w + add[c] + tex + noise;
        img[(static_cast<size_t>(y) * w + x) * 3 + c] = static_cast<uint8_t>(std::clamp(v, 0, 255));
      }
    }
  }
  return img;
}

struct Generated {
  double mean_bytes = 0;
  double mean_height = 0, mean_width = 0;
};

// Writes `count` JPEGs into dir/class{0..9}/NNNNNN.jpg.
Result<Generated> WriteImagenetLike(const std::string& dir, int count) {
  // ImageNet's common shapes: mostly 500x375 / 375x500 and 500x333, some others.
  static const int kSizes[][2] = {{375, 500}, {375, 500}, {375, 500}, {500, 375}, {500, 375},
                                  {333, 500}, {333, 500}, {500, 333}, {400, 500}, {360, 480},
                                  {281, 500}, {500, 500}};
  std::mt19937_64 rng(20240611);
  tjhandle t = tjInitCompress();
  if (t == nullptr) return Status::Internal("tjInitCompress failed");
  Generated g;
  for (int i = 0; i < count; ++i) {
    const auto& s = kSizes[rng() % (sizeof(kSizes) / sizeof(kSizes[0]))];
    const int h = s[0] - static_cast<int>(rng() % 20), w = s[1] - static_cast<int>(rng() % 20);
    const auto img = MakePhoto(h, w, rng);
    unsigned char* jpeg = nullptr;
    unsigned long size = 0;
    if (tjCompress2(t, img.data(), w, 0, h, TJPF_RGB, &jpeg, &size, TJSAMP_420, 90, 0) != 0) {
      tjDestroy(t);
      return Status::Internal(std::string("tjCompress2: ") + tjGetErrorStr2(t));
    }
    const std::string cls = dir + "/class" + std::to_string(i % 10);
    std::filesystem::create_directories(cls);
    char name[32];
    std::snprintf(name, sizeof name, "/%06d.jpg", i);
    FILE* f = std::fopen((cls + name).c_str(), "wb");
    const bool ok = f != nullptr && std::fwrite(jpeg, 1, size, f) == size;
    if (f != nullptr) std::fclose(f);
    tjFree(jpeg);
    if (!ok) {
      tjDestroy(t);
      return Status::IOError(cls + name + ": cannot write");
    }
    g.mean_bytes += static_cast<double>(size) / count;
    g.mean_height += static_cast<double>(h) / count;
    g.mean_width += static_cast<double>(w) / count;
  }
  tjDestroy(t);
  return g;
}

// ---- the bare loop ----------------------------------------------------------------

struct BareLoop {
  std::vector<std::string> files;
  std::vector<int64_t> labels;
  bool train = true;  // imagenet-train, else imagenet-eval
  int interp = cv::INTER_AREA;
  int64_t batch = 128;
  std::vector<float> out_images;  // batch x 3 x 224 x 224, reused
  std::vector<int64_t> out_labels;
  float lut[3][256];
};

bool ReadWhole(const std::string& path, std::vector<uint8_t>* buf) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return false;
  struct stat st;
  if (::fstat(fd, &st) != 0) {
    ::close(fd);
    return false;
  }
  buf->resize(static_cast<size_t>(st.st_size));
  size_t got = 0;
  while (got < buf->size()) {
    const ssize_t n = ::read(fd, buf->data() + got, buf->size() - got);
    if (n <= 0) break;
    got += static_cast<size_t>(n);
  }
  ::close(fd);
  return got == buf->size();
}

// A random crop of the preset's distribution (torchvision's get_params,
// first try that fits, else the whole image).
cv::Rect RandomCrop(SampleRng& rng, int h, int w) {
  const double area = static_cast<double>(h) * w;
  for (int i = 0; i < 10; ++i) {
    const double target = area * rng.NextDouble(0.08, 1.0);
    const double ratio = std::exp(rng.NextDouble(std::log(3.0 / 4.0), std::log(4.0 / 3.0)));
    const int cw = static_cast<int>(std::lround(std::sqrt(target * ratio)));
    const int ch = static_cast<int>(std::lround(std::sqrt(target / ratio)));
    if (cw > 0 && cw <= w && ch > 0 && ch <= h) {
      const int top = static_cast<int>(rng.NextBelow(static_cast<uint64_t>(h - ch + 1)));
      const int left = static_cast<int>(rng.NextBelow(static_cast<uint64_t>(w - cw + 1)));
      return cv::Rect(left, top, cw, ch);
    }
  }
  return cv::Rect(0, 0, w, h);
}

Rate RunBareLoop(BareLoop& k, int threads, double seconds, bool* failed) {
  const auto n = static_cast<size_t>(threads);
  const auto slots = static_cast<size_t>(k.batch);
  const size_t plane = 224 * 224;
  std::vector<uint64_t> done(n, 0);
  std::vector<int64_t> ended(n, 0);
  std::vector<char> bad(n, 0);
  const int64_t start = NowNs(), cpu_start = ProcessCpuNs();
  const int64_t deadline = start + static_cast<int64_t>(seconds * 1e9);
  std::vector<std::thread> pool;
  for (size_t t = 0; t < n; ++t) {
    pool.emplace_back([&, t] {
      const size_t first = t * k.files.size() / n, last = (t + 1) * k.files.size() / n;
      const size_t slot0 = t * slots / n, slot_n = (t + 1) * slots / n - slot0;
      tjhandle tj = tjInitDecompress();
      std::vector<uint8_t> file, rgb;
      cv::Mat resized, shorter;
      uint64_t samples = 0;
      size_t i = first, slot = 0;
      while (NowNs() < deadline) {
        for (int step = 0; step < 8; ++step) {
          int w = 0, h = 0, sub = 0, cs = 0;
          if (!ReadWhole(k.files[i], &file) ||
              tjDecompressHeader3(tj, file.data(), file.size(), &w, &h, &sub, &cs) != 0) {
            bad[t] = 1;
            break;
          }
          rgb.resize(static_cast<size_t>(w) * h * 3);
          tjDecompress2(tj, file.data(), file.size(), rgb.data(), w, 0, h, TJPF_RGB, 0);
          const cv::Mat img(h, w, CV_8UC3, rgb.data());
          SampleRng rng(1, 0, i);
          cv::Mat roi;
          if (k.train) {
            const cv::Rect box = RandomCrop(rng, h, w);
            const bool shrink = box.width > 224 || box.height > 224;
            cv::resize(img(box), resized, cv::Size(224, 224), 0, 0, shrink ? k.interp : cv::INTER_LINEAR);
            if (rng.NextDouble() < 0.5) cv::flip(resized, resized, 1);
            roi = resized;
          } else {
            const double s = 256.0 / std::min(h, w);
            const int nh = h <= w ? 256 : static_cast<int>(h * s), nw = h <= w ? static_cast<int>(w * s) : 256;
            cv::resize(img, shorter, cv::Size(nw, nh), 0, 0, k.interp);
            roi = shorter(cv::Rect((nw - 224) / 2, (nh - 224) / 2, 224, 224));
          }
          float* out = k.out_images.data() + (slot0 + slot) * 3 * plane;
          for (int y = 0; y < 224; ++y) {
            const uint8_t* row = roi.ptr<uint8_t>(y);
            for (int x = 0; x < 224; ++x) {
              const size_t o = static_cast<size_t>(y) * 224 + x;
              out[o] = k.lut[0][row[3 * x]];
              out[plane + o] = k.lut[1][row[3 * x + 1]];
              out[2 * plane + o] = k.lut[2][row[3 * x + 2]];
            }
          }
          k.out_labels[slot0 + slot] = k.labels[i];
          ++samples;
          if (++i == last) i = first;
          if (++slot == slot_n) slot = 0;
        }
        if (bad[t]) break;
      }
      tjDestroy(tj);
      done[t] = samples;
      ended[t] = NowNs();
    });
  }
  for (auto& th : pool) th.join();
  *failed = std::any_of(bad.begin(), bad.end(), [](char b) { return b != 0; });
  const int64_t cpu = ProcessCpuNs() - cpu_start;
  double total = 0;
  for (uint64_t d : done) total += static_cast<double>(d);
  return {total / (static_cast<double>(*std::max_element(ended.begin(), ended.end()) - start) / 1e9),
          total / (static_cast<double>(cpu) / 1e9)};
}

}  // namespace

int RunImagePipeline(const PipelineOptions& o) {
  const bool json = o.json;
  const std::string preset = o.preset;
  std::string folder = o.image_folder;
  const int64_t threads = o.threads;
  const int64_t batch = o.Given("--batch") ? o.batch : 128;
  const int64_t images = o.images;
  const double seconds = o.seconds;
  const int64_t repeats = o.repeats;
  const std::string decode = o.decode;
  const std::string interp = o.bare_interp;
  const bool scaling = o.scaling;
  const bool torchvision = o.torchvision;
  const int64_t tv_count = o.Given("--tv-count") ? o.tv_count : 300;
  const std::string python = o.python;
  const std::string tv_script = o.tv_script;
  if (threads > 256 || batch < threads || images < batch) {
    std::fprintf(stderr,
                 "datafeed-bench pipeline: with --preset/--image-folder, need --threads <= 256, --batch >= "
                 "--threads, --images >= --batch\n");
    return 2;
  }
  auto spec = Pipeline::Preset(preset);
  if (!spec.ok()) return Fail("--preset", spec.status());
  auto pipeline = Pipeline::Make(*spec);
  if (!pipeline.ok()) return Fail("--preset", pipeline.status());

  std::string generated_dir;
  Generated gen;
  if (folder.empty()) {
    char tmpl[] = "/tmp/datafeed-image-bench-XXXXXX";
    if (!mkdtemp(tmpl)) return Fail("temporary directory", Status::FromErrno(errno, "mkdtemp"));
    generated_dir = tmpl;
    folder = generated_dir + "/train";
    auto g = WriteImagenetLike(folder, static_cast<int>(images));
    if (!g.ok()) return Fail("writing the images", g.status());
    gen = *g;
  }
  auto remove_dir = [&] {
    if (generated_dir.empty()) return;
    std::error_code ec;
    std::filesystem::remove_all(generated_dir, ec);
  };
  auto opened = ImageFolderDataset::Open(folder);
  if (!opened.ok()) {
    remove_dir();
    return Fail("opening the folder", opened.status());
  }
  std::shared_ptr<const ImageFolderDataset> ds = std::move(opened).value();

  BareLoop k;
  k.train = preset == "imagenet-train";
  k.interp = interp == "area" ? cv::INTER_AREA : cv::INTER_LINEAR;
  k.batch = batch;
  for (size_t i = 0; i < ds->size(); ++i) {
    k.files.push_back(ds->path(i));
    k.labels.push_back(ds->label(i));
  }
  k.out_images.assign(static_cast<size_t>(batch) * 3 * 224 * 224, 0.0f);
  k.out_labels.assign(static_cast<size_t>(batch), 0);
  for (int c = 0; c < 3; ++c) {
    for (int v = 0; v < 256; ++v) k.lut[c][v] = (static_cast<float>(v) / 255.0f - kMean[c]) / kStd[c];
  }

  TorchvisionRun tv;
  if (torchvision) {
    tv = RunTorchvision(python, tv_script,
                        "--image-folder '" + folder + "' --preset " + preset + " --count " +
                            std::to_string(tv_count) + " --repeats " + std::to_string(repeats));
  }

  const int n = static_cast<int>(threads);
  const DecodeMode mode = decode == "reduced" ? DecodeMode::kReduced : DecodeMode::kExact;
  bool bare_failed = false;
  RunBareLoop(k, n, std::min(1.0, seconds), &bare_failed);  // warm-up: page cache, OpenCV init
  if (bare_failed) {
    remove_dir();
    return Fail("bare loop", Status::DataLoss("a file could not be read or decoded"));
  }
  Repeated df, cv, df1, cv1;
  ProducerStats stats;
  int run_id = 0;
  for (int64_t r = 0; r < repeats; ++r) {
    auto run = RunProducer(ds, *pipeline, "inproc", n, batch, true, seconds, run_id++, mode);
    if (!run.ok()) {
      remove_dir();
      return Fail("datafeed run", run.status());
    }
    df.Add(run->rate);
    stats = run->stats;
    cv.Add(RunBareLoop(k, n, seconds, &bare_failed));
    if (scaling) {
      auto one = RunProducer(ds, *pipeline, "inproc", 1, batch, true, seconds, run_id++, mode);
      if (!one.ok()) {
        remove_dir();
        return Fail("datafeed run, 1 thread", one.status());
      }
      df1.Add(one->rate);
      cv1.Add(RunBareLoop(k, 1, seconds, &bare_failed));
    }
  }
  remove_dir();

  const double rate = df.median(), bare = cv.median();
  Repeated pairs;
  for (size_t i = 0; i < df.runs.size(); ++i) pairs.runs.push_back(df.runs[i] / cv.runs[i]);
  const double thread_s = stats.elapsed_s * n;
  auto share = [&](double s) { return thread_s > 0 ? 100.0 * s / thread_s : 0.0; };
  const double tv_cpu = tv.json.contains("samples_per_cpu_s") && tv.json["samples_per_cpu_s"].is_number()
                            ? tv.json["samples_per_cpu_s"].get<double>()
                            : 0.0;
  tools::JsonObject j;
  j["bench"] = "pipeline";
  j["preset"] = preset;
  j["stages"] = pipeline->Describe();
  j["decode"] = decode;
  j["bare_interp"] = interp;
  j["images"] = ds->size();
  j["mean_jpeg_bytes"] = std::llround(gen.mean_bytes);
  j["mean_size"] = Num(gen.mean_height, 0) + "x" + Num(gen.mean_width, 0);
  j["batch"] = batch;
  j["threads"] = n;
  j["repeats"] = repeats;
  j["samples_per_s"] = std::llround(rate);
  j["samples_per_s_per_thread"] = std::llround(rate / n);
  j["bare_samples_per_s"] = std::llround(bare);
  j["ratio"] = tools::Round(rate / bare, 3);
  j["ratio_runs"] = pairs.Rounded(3);
  j["samples_per_cpu_s"] = std::llround(df.cpu_median());
  j["bare_samples_per_cpu_s"] = std::llround(cv.cpu_median());
  j["cpu_ratio"] = tools::Round(df.cpu_median() / cv.cpu_median(), 3);
  j["read_pct"] = tools::Round(share(stats.read_s), 1);
  j["decode_pct"] = tools::Round(share(stats.decode_s), 1);
  j["transform_pct"] = tools::Round(share(stats.transform_s), 1);
  if (scaling) {
    j["samples_per_s_1thread"] = std::llround(df1.median());
    j["scaling"] = tools::Round(rate / df1.median(), 3);
    j["bare_samples_per_s_1thread"] = std::llround(cv1.median());
    j["bare_scaling"] = tools::Round(bare / cv1.median(), 3);
  }
  if (tv.samples_per_s > 0) {
    j["torchvision_samples_per_s"] = std::llround(tv.samples_per_s);
    j["x_torchvision"] = tools::Round(rate / n / tv.samples_per_s, 2);
    j["torchvision_samples_per_cpu_s"] = std::llround(tv_cpu);
    if (tv_cpu > 0) j["x_torchvision_cpu"] = tools::Round(df.cpu_median() / tv_cpu, 2);
  }
  if (json) {
    if (!tv.note.empty()) std::fprintf(stderr, "datafeed-bench pipeline: %s\n", tv.note.c_str());
    std::printf("%s\n", tools::JsonLine(j).c_str());
    return 0;
  }
  std::printf("pipeline %s (%s), decode %s, batch %lld, %d thread%s, %zu JPEGs",
              preset.c_str(), pipeline->Describe().c_str(), decode.c_str(),
              static_cast<long long>(batch), n, n == 1 ? "" : "s", ds->size());
  if (gen.mean_bytes > 0) {
    std::printf(" (generated, quality 90, mean %.0fx%.0f, %.0f KB)", gen.mean_height,
                gen.mean_width, gen.mean_bytes / 1024);
  }
  std::printf("\n  median of %lld runs of %.1f s each; datafeed and bare runs interleaved\n",
              static_cast<long long>(repeats), seconds);
  std::printf("  datafeed     %8.0f samples/s (%.0f per thread; runs %s)\n", rate, rate / n,
              df.Text().c_str());
  std::printf("  bare loop    %8.0f samples/s (read + TurboJPEG + cv::resize %s + normalise; runs %s)\n",
              bare, interp.c_str(), cv.Text().c_str());
  std::printf("  ratio        %8.3f (run by run: %s)\n", rate / bare, pairs.Text(3).c_str());
  std::printf("  per CPU s    datafeed %.0f, bare %.0f samples per CPU second (process CPU time:\n"
              "               what other tenants of a shared machine disturb least), ratio %.3f\n",
              df.cpu_median(), cv.cpu_median(), df.cpu_median() / cv.cpu_median());
  std::printf("  producer     thread time: read %.1f%%, decode %.1f%%, transform %.1f%%\n",
              share(stats.read_s), share(stats.decode_s), share(stats.transform_s));
  if (scaling) {
    std::printf("  1 thread     datafeed %.0f samples/s, scaling %.2fx; bare %.0f, scaling %.2fx\n",
                df1.median(), rate / df1.median(), cv1.median(), bare / cv1.median());
  }
  if (torchvision) {
    if (tv.samples_per_s > 0) {
      std::printf("  torchvision  %8.0f samples/s per core (ImageFolder + PIL + transforms, one "
                  "process, 1 torch thread, %lld images)\n",
                  tv.samples_per_s, static_cast<long long>(tv_count));
      std::printf("               datafeed per thread is %.2fx torchvision per core; per CPU "
                  "second %.0f vs %.0f: %.2fx\n",
                  rate / n / tv.samples_per_s, df.cpu_median(), tv_cpu,
                  tv_cpu > 0 ? df.cpu_median() / tv_cpu : 0.0);
    } else {
      std::printf("  torchvision  %s\n", tv.note.c_str());
    }
  }
  return 0;
}

}  // namespace datafeed::bench
