// Demo agents: each shows one thing the supervisor does.
// Run them with:  symbiont run assets/demo.dsl --native

agent Steady {
  metadata { name: "Steady worker" version: "1.0.0" }
  security { tier: None }
  limits { max_memory_mb: 128 timeout: 60s }
  on start {
    execute_native("bash -c 'for i in $(seq 1 20); do echo \"tick $i\"; sleep 1; done'")
  }
}

agent Leaky {
  metadata { name: "Leaks memory toward its 200 MB limit" }
  security { tier: None }
  limits { max_memory_mb: 200 timeout: 60s }
  on start {
    execute_native("python3 -c 'import time\nb=[]\nfor i in range(60):\n    b.append(bytearray(8 << 20)); print(len(b) * 8, \"MB\", flush=True); time.sleep(0.25)'")
  }
}

agent Slowpoke {
  metadata { name: "Heads for its 8 s timeout" }
  security { tier: None }
  limits { timeout: 8s }
  on start {
    execute_native("bash -c 'echo working; sleep 600'")
  }
}

agent Chatty {
  metadata { name: "Logs fast, then ends well before its timeout" }
  security { tier: None }
  limits { timeout: 60s }
  on start {
    execute_native("bash -c 'for i in $(seq 1 1000); do echo \"line $i: the quick brown fox\"; echo \"warn $i\" >&2; sleep 0.005; done'")
  }
}

agent Forker {
  metadata { name: "Spawns a tree of children" }
  security { tier: None }
  limits { max_processes: 64 timeout: 20s }
  on start {
    execute_native("bash -c 'for i in 1 2 3 4; do (for j in 1 2; do sleep 12 & done; wait) & done; echo spawned; wait'")
  }
}
