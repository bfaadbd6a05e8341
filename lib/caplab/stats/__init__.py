"""The statistics toolkit every paper shares, one of each: laws as data (`laws`), robust multi-start fits with
bootstrap intervals (`fitting`, `dual`), law comparison and extrapolation (`fit_compare`), resampling intervals
(`resampling`) and slopes with intervals (`regression`)."""
