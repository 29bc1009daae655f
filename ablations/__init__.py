"""The ablation ladder as sweeps, tables against the papers, and plots (issue 6)."""
