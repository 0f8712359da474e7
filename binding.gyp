{
  "targets": [
    {
      "target_name": "deepalign_native",
      "sources": ["native/deepalign_native.cc"],
      "cflags_cc!": ["-fno-exceptions"],
      "cflags_cc": ["-O3", "-march=native", "-std=c++17", "-fno-math-errno", "-ffp-contract=off"],
      "ldflags": ["-pthread"],
      "defines": ["NAPI_VERSION=8"]
    }
  ]
}
