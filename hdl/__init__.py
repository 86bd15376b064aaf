"""Amaranth RTL of the EIE processing element and PE array (issue: RTL)."""
