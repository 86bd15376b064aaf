"""PyTorch pruning and weight-sharing pipeline that feeds the EIE image (issue: pruning)."""
