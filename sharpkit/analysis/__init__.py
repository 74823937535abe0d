"""Layer 4, analysis of stored results: statistics, the paper-layout tables and claims, and figures."""
