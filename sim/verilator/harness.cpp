// Verilator harness for the eie_array top: replays host-bus operations from a file.
//
// Input (argv[1]), one operation per line:
//   W <addr> <data>   write (one cycle)
//   R <addr>          read (two cycles); prints "R <value>"
//   S                 START already written: wait until STATUS.BUSY drops; prints "S <cycles waited>"
// Numbers are decimal. Output goes to argv[2]. Exit 0 unless a wait exceeds the limit.
// Verilator spells the ports `bus__x` as `bus___05Fx` (it escapes double underscores).
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <memory>
#include "Veie_array.h"
#include "verilated.h"

#ifndef EIE_READ_LATENCY
#error "build with -DEIE_READ_LATENCY=<hdl/host_map.py READ_LATENCY> (sim/verilator_run.py does)"
#endif

static uint64_t cycles = 0;

static void tick(Veie_array* top) {
    top->clk = 0;
    top->eval();
    top->clk = 1;
    top->eval();
    ++cycles;
}

int main(int argc, char** argv) {
    if (argc < 3) {
        std::fprintf(stderr, "usage: %s OPS OUT\n", argv[0]);
        return 2;
    }
    const std::unique_ptr<VerilatedContext> ctx{new VerilatedContext};
    const std::unique_ptr<Veie_array> top{new Veie_array{ctx.get()}};
    FILE* in = std::fopen(argv[1], "r");
    FILE* out = std::fopen(argv[2], "w");
    if (!in || !out) {
        std::fprintf(stderr, "cannot open %s or %s\n", argv[1], argv[2]);
        return 2;
    }
    top->rst = 1;
    tick(top.get());
    tick(top.get());
    top->rst = 0;
    const uint32_t status_addr = 1;  // CTRL region, offset STATUS
    char op;
    unsigned long long a, d;
    while (std::fscanf(in, " %c", &op) == 1) {
        if (op == 'W') {
            if (std::fscanf(in, "%llu %llu", &a, &d) != 2) return 3;
            top->bus___05Faddr = (uint32_t)a;
            top->bus___05Fw_data = (uint64_t)d;
            top->bus___05Fw_en = 1;
            tick(top.get());
            top->bus___05Fw_en = 0;
        } else if (op == 'R') {
            if (std::fscanf(in, "%llu", &a) != 1) return 3;
            top->bus___05Faddr = (uint32_t)a;
            top->bus___05Fr_en = 1;
            tick(top.get());
            top->bus___05Fr_en = 0;
            for (int i = 1; i < EIE_READ_LATENCY; ++i) tick(top.get());  // the answer comes READ_LATENCY cycles later
            top->eval();
            std::fprintf(out, "R %llu\n", (unsigned long long)top->bus___05Fr_data);
        } else if (op == 'S') {
            uint64_t waited = 0;
            top->bus___05Faddr = status_addr;
            top->bus___05Fr_en = 1;
            do {
                tick(top.get());
                ++waited;
                if (waited > (1ull << 40)) return 4;
            } while (!top->bus___05Fr_valid || (top->bus___05Fr_data & 1));  // answers come READ_LATENCY cycles late
            top->bus___05Fr_en = 0;
            std::fprintf(out, "S %llu\n", (unsigned long long)waited);
        } else {
            std::fprintf(stderr, "bad op %c\n", op);
            return 3;
        }
    }
    std::fprintf(out, "T %llu\n", (unsigned long long)cycles);
    top->final();
    std::fclose(out);
    return 0;
}
