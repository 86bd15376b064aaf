"""cocotb testbenches and runners comparing the RTL with the golden model (issue: verification)."""
