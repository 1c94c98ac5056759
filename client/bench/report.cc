// report.cc: turns the per-rep samples of every figure into the table
// (median of reps, [min-max] spread, ratio oriented so that > 1 means volfs is
// better, the target and whether it is met) and into the same for --json.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <fstream>

#include "bench.h"

namespace volbench {

double Samples::median() const {
  if (v.empty()) return NAN;
  std::vector<double> s = v;
  std::sort(s.begin(), s.end());
  size_t n = s.size();
  return n % 2 ? s[n / 2] : (s[n / 2 - 1] + s[n / 2]) / 2;
}

double Samples::min() const { return v.empty() ? NAN : *std::min_element(v.begin(), v.end()); }
double Samples::max() const { return v.empty() ? NAN : *std::max_element(v.begin(), v.end()); }

double Row::ratio() const {
  if (volfs.empty() || baseline.empty()) return NAN;
  double a = volfs.median(), b = baseline.median();
  if (better == Better::kHigher) return b == 0 ? NAN : a / b;
  return a == 0 ? NAN : b / a;
}

std::string Target::text() const {
  switch (kind) {
    case kNone:
      return "";
    case kRatioAtLeast:
      return "ratio >= " + fmt(value, 2);
    case kVolfsAtMost:
      return "volfs <= " + fmt(value, 3);
    case kVolfsAtLeast:
      return "volfs >= " + fmt(value, 3);
  }
  return "";
}

std::string Row::verdict() const {
  switch (target.kind) {
    case Target::kNone:
      return "";
    case Target::kRatioAtLeast: {
      double r = ratio();
      return std::isnan(r) ? "" : (r >= target.value ? "ok" : "MISS");
    }
    case Target::kVolfsAtMost:
      return volfs.empty() ? "" : (volfs.median() <= target.value ? "ok" : "MISS");
    case Target::kVolfsAtLeast:
      return volfs.empty() ? "" : (volfs.median() >= target.value ? "ok" : "MISS");
  }
  return "";
}

void Report::relabel_baseline_since(size_t first, const std::string& fs) {
  for (size_t i = first; i < rows_.size(); ++i) {
    std::string& l = rows_[i].baseline_label;
    if (size_t pos = l.find("tmpfs"); pos != std::string::npos) l.replace(pos, 5, fs);
  }
}

void Report::skipped(const std::string& workload, const std::string& why) {
  skips_.emplace_back(workload, why);
  std::fprintf(stderr, "%-16s not run: %s\n", workload.c_str(), why.c_str());
}

void Report::failed(const std::string& workload, const std::string& why) {
  failures_.emplace_back(workload, why);
  std::fprintf(stderr, "%-16s FAILED: %s\n", workload.c_str(), why.c_str());
}

namespace {

std::string figure(const Samples& s) {
  if (s.empty()) return "-";
  if (s.v.size() == 1) return fmt(s.median());
  return fmt(s.median()) + " [" + fmt(s.min()) + "-" + fmt(s.max()) + "]";
}

std::string json_number(double v) {
  if (std::isnan(v) || std::isinf(v)) return "null";
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.6g", v);
  return buf;
}

std::string json_samples(const Samples& s) {
  if (s.empty()) return "null";
  std::string out = "{\"median\": " + json_number(s.median()) +
                    ", \"min\": " + json_number(s.min()) + ", \"max\": " + json_number(s.max()) +
                    ", \"reps\": [";
  for (size_t i = 0; i < s.v.size(); ++i) out += (i ? ", " : "") + json_number(s.v[i]);
  return out + "]}";
}

}  // namespace

void Report::print_header(FILE* out, const std::string& intro) const {
  std::fprintf(out, "%s", intro.c_str());
  std::fprintf(out,
               "Figures: median of reps [min-max]. ratio > 1 means volfs is better "
               "(throughput: volfs/baseline; latency, time, memory: baseline/volfs).\n\n");
  std::fprintf(out, "%-16s %-26s %-8s %-28s %-28s %-22s %7s  %-16s %s\n", "workload", "metric",
               "unit", "volfs", "baseline", "baseline is", "ratio", "target", "");
  std::fflush(out);
}

void Report::print_rows_since(FILE* out, size_t first) const {
  for (size_t i = first; i < rows_.size(); ++i) {
    const Row& r = rows_[i];
    double ratio = r.ratio();
    std::fprintf(out, "%-16s %-26s %-8s %-28s %-28s %-22s %7s  %-16s %s\n", r.workload.c_str(),
                 r.metric.c_str(), r.unit.c_str(), figure(r.volfs).c_str(),
                 figure(r.baseline).c_str(), r.baseline.empty() ? "-" : r.baseline_label.c_str(),
                 std::isnan(ratio) ? "-" : fmt(ratio, 2).c_str(), r.target.text().c_str(),
                 r.verdict().c_str());
    if (!r.note.empty()) std::fprintf(out, "%-16s   note: %s\n", "", r.note.c_str());
  }
  std::fflush(out);
}

std::string json_escape(const std::string& s) {
  std::string out;
  for (char c : s) {
    switch (c) {
      case '"':
        out += "\\\"";
        break;
      case '\\':
        out += "\\\\";
        break;
      case '\n':
        out += "\\n";
        break;
      case '\t':
        out += "\\t";
        break;
      default:
        if (static_cast<unsigned char>(c) < 0x20) {
          char buf[8];
          std::snprintf(buf, sizeof buf, "\\u%04x", c);
          out += buf;
        } else {
          out += c;
        }
    }
  }
  return out;
}

bool Report::write_json(const std::string& path, const std::string& meta_json) const {
  std::string j = "{\n  \"meta\": " + meta_json + ",\n  \"results\": [\n";
  for (size_t i = 0; i < rows_.size(); ++i) {
    const Row& r = rows_[i];
    j += "    {\"workload\": \"" + json_escape(r.workload) + "\", \"metric\": \"" +
         json_escape(r.metric) + "\", \"unit\": \"" + json_escape(r.unit) + "\", \"better\": \"" +
         (r.better == Better::kHigher ? "higher" : "lower") +
         "\", \"volfs\": " + json_samples(r.volfs) + ", \"baseline\": " + json_samples(r.baseline) +
         ", \"baseline_is\": " +
         (r.baseline.empty() ? "null" : "\"" + json_escape(r.baseline_label) + "\"") +
         ", \"ratio\": " + json_number(r.ratio()) + ", \"target\": " +
         (r.target.kind == Target::kNone ? "null" : "\"" + json_escape(r.target.text()) + "\"") +
         ", \"verdict\": " + (r.verdict().empty() ? "null" : "\"" + r.verdict() + "\"") +
         ", \"note\": \"" + json_escape(r.note) + "\"}";
    j += i + 1 < rows_.size() ? ",\n" : "\n";
  }
  j += "  ],\n  \"not_run\": [";
  for (size_t i = 0; i < skips_.size(); ++i) {
    j += std::string(i ? ", " : "") + "{\"workload\": \"" + json_escape(skips_[i].first) +
         "\", \"why\": \"" + json_escape(skips_[i].second) + "\"}";
  }
  j += "],\n  \"failed\": [";
  for (size_t i = 0; i < failures_.size(); ++i) {
    j += std::string(i ? ", " : "") + "{\"workload\": \"" + json_escape(failures_[i].first) +
         "\", \"why\": \"" + json_escape(failures_[i].second) + "\"}";
  }
  j += "]\n}\n";
  if (path == "-") {
    std::fwrite(j.data(), 1, j.size(), stdout);
    std::fflush(stdout);
    return true;
  }
  std::ofstream f(path, std::ios::binary | std::ios::trunc);
  f << j;
  return static_cast<bool>(f);
}

Row make_row(const std::string& workload, const std::string& metric, const std::string& unit,
             Better better, Target target) {
  Row r;
  r.workload = workload;
  r.metric = metric;
  r.unit = unit;
  r.better = better;
  r.target = target;
  return r;
}

}  // namespace volbench
