"""Demo-only experiments (hybrid search starts, distribution evaluation, ground-truth
projection): they need the procedural demo world. The library never imports lab."""
