// libFuzzer harness over page-table operation sequences (LLVMFuzzerTestOneInput), also linked
// into the always-built replay test. Input layout:
//   byte 0   format (mod 5) and configuration ((b / 5) mod 4: locked+coalescing, locked without
//            coalescing, lock-free, locked with refuse_overmap and 4K leaves only)
//   byte 1   base (mod 3: 0, the top of the space, above 2^48 / 2^47) and window (bit 7: 4 GiB,
//            else 8 MiB)
//   then 8 bytes per operation (at most 64): b0 bit 0 map/unmap, bits 3:1 unit (0-5: 4K,
//   6: 2M, 7: 1G), bits 5:4 contiguous phys unless 0, bits 7:6 permission choice; b1-b2 unit
//   index; b3-b4 count; b5-b7 phys index.
#include "pt_ops_fuzz.hpp"

#include <cstdio>
#include <cstdlib>

#include "conformance/pt_model.hpp"

namespace ptreclaim::pt::testing {

std::string run_pt_ops(const std::uint8_t* data, std::size_t size) {
  if (size < 2) return {};
  static constexpr format_kind kinds[] = {format_kind::vtd_ss_4, format_kind::vtd_ss_5,
                                          format_kind::x86_64_4, format_kind::x86_64_5,
                                          format_kind::amd_v1_4};
  const format_kind kind = kinds[data[0] % 5];
  domain_config cfg;
  switch ((data[0] / 5) % 4) {
    case 0:
      break;
    case 1:
      cfg.coalesce = false;
      break;
    case 2:
      cfg.mode = concurrency_mode::lock_free;
      break;
    default:
      cfg.refuse_overmap = true;
      cfg.leaf_levels = 0b10;
      break;
  }
  const unsigned va_bits = describe(kind).va_bits;
  const unsigned window_lg2 = ((data[1] & 0x80) && (cfg.leaf_levels & 0b1000)) ? 32 : 23;
  iova_t base = 0;
  switch (data[1] % 3) {
    case 0:
      break;
    case 1:
      base = (iova_t{1} << va_bits) - (iova_t{1} << window_lg2);
      break;
    default:
      base = iova_t{1} << (va_bits > 48 ? 52 : 47);
      break;
  }
  pt_model m(kind, cfg, base, window_lg2);
  data += 2;
  size -= 2;
  for (unsigned n = 0; size >= 8 && n < 64; ++n, data += 8, size -= 8) {
    const unsigned unit_sel = (data[0] >> 1) & 7;
    op_spec o;
    o.is_map = (data[0] & 1) != 0;
    o.unit_lg2 = unit_sel < 6 ? 12 : unit_sel == 6 ? 21 : 30;
    o.contiguous_phys = ((data[0] >> 4) & 3) != 0;
    o.perm_sel = data[0] >> 6;
    o.index = data[1] | (unsigned{data[2]} << 8);
    o.count = 1 + ((data[3] | (unsigned{data[4]} << 8)) % (o.unit_lg2 == 12 ? 1024 : 4));
    o.phys_index = data[5] | (unsigned{data[6]} << 8) | (unsigned{data[7]} << 16);
    if (std::string e = m.apply(o); !e.empty()) return "op " + std::to_string(n) + ": " + e;
  }
  return m.finish();
}

}  // namespace ptreclaim::pt::testing

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string e = ptreclaim::pt::testing::run_pt_ops(data, size);
  if (!e.empty()) {
    std::fprintf(stderr, "pt_ops: %s\n", e.c_str());
    std::abort();
  }
  return 0;
}
