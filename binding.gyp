{
  "targets": [
    {
      "target_name": "deepalign_native",
      "sources": ["native/deepalign_native.cc"],
      "cflags_cc!": ["-fno-exceptions"],
      "cflags_cc": ["-O3", "-march=native", "-fopenmp", "-std=c++17", "-fno-math-errno", "-ffp-contract=off"],
      "ldflags": ["-fopenmp"],
      "defines": ["NAPI_VERSION=8"]
    }
  ]
}
