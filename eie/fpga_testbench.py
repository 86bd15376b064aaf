"""The Verilog testbench of the gate-level self-test (fpga.gate_level_selftest): clocks the
synthesised netlist and reports the first cycle the pass LED lights, or a failure."""

__all__ = ["GATE_LEVEL_TB"]

GATE_LEVEL_TB = """`timescale 1ns/1ps
module tb;
  reg clk = 0;
  wire clk_w;
  assign clk_w = clk;
  wire pass_pin, fail_pin;
  top dut(.{clk}(clk_w), .{pass_port}(pass_pin), .{fail_port}(fail_pin){others});
  always #5 clk = ~clk;
  integer i, first;
  initial begin
    first = -1;
    for (i = 0; i < {cycles}; i = i + 1) begin
      @(posedge clk);
      if (first < 0 && pass_pin === 1'b{on}) first = i;
      if (fail_pin === 1'b{on}) begin $display("FAIL at %0d", i); $finish; end
    end
    $display("END first_pass=%0d pass=%b fail=%b", first, pass_pin, fail_pin);
    $finish;
  end
endmodule
"""
