{
  "targets": [
    {
      "target_name": "l4lb_native",
      "sources": ["src/addon.c", "src/engine.c", "src/pick.c", "src/proxy.c", "src/admit.c"],
      "cflags": ["-std=gnu11", "-Wall", "-Wextra", "-Werror", "-fstack-protector-strong", "-D_FORTIFY_SOURCE=2", "-O2"],
      "cflags!": ["-fno-exceptions"],
      "defines": ["NAPI_VERSION=8"],
      "libraries": ["-lpthread", "-lm"]
    }
  ]
}
