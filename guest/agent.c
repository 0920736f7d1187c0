/*
 * symbiont's guest agent: /init of the Tier3 microVM's initramfs.
 *
 * It loads the virtio modules, mounts the run's control share (virtio-9p, tag "ctl") and its
 * working directory (tag "work", at the host's path), reads the command from ctl/spec, runs it
 * in a cgroup of its own (memory.max, pids.max) under rlimits (RLIMIT_FSIZE, RLIMIT_CPU), with
 * its stdout and stderr on the virtio serial ports named "stdout" and "stderr" and its stdin on
 * the one named "stdin", writes how it ended to ctl/status and powers the VM off.
 *
 * C and `gcc -static` rather than a Rust crate: it is a few hundred lines of system calls, the
 * host's C compiler (already needed to link Rust) builds it in a fraction of a second, and the
 * static binary is about 800 KB instead of a second Cargo project and toolchain target.
 *
 * ctl/spec holds NUL-terminated strings in pairs: key, value. Keys: cwd, memory (bytes), pids,
 * fsize (bytes), cpu (seconds), arg (repeated, in order), env (KEY=VALUE, repeated), probe.
 * ctl/status gets lines: "exit N" or "signal N", then "oom N" and "pids_refused N"; while the
 * command runs, ctl/pids_refused says how many of its forks the process limit refused (the
 * host's watchdog ends the run on the first, as it does for a native run).
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/reboot.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define CTL "/run/symbiont"
#define CG "/sys/fs/cgroup/agent"

static void say(const char *fmt, ...) {
  /* The kernel console (the serial port the host logs to a file): for troubleshooting. */
  va_list ap;
  va_start(ap, fmt);
  fprintf(stderr, "symbiont-guest: ");
  vfprintf(stderr, fmt, ap);
  fprintf(stderr, "\n");
  va_end(ap);
}

static void power_off(void) {
  sync();
  reboot(RB_POWER_OFF);
  /* QEMU runs with -no-reboot: a reset ends it too. */
  reboot(RB_AUTOBOOT);
  for (;;) pause();
}

static void fail(const char *what) {
  say("%s: %s", what, strerror(errno));
  int fd = open(CTL "/status", O_WRONLY | O_CREAT | O_TRUNC, 0644);
  if (fd >= 0) {
    dprintf(fd, "error %s: %s\n", what, strerror(errno));
    close(fd);
  }
  power_off();
}

static void sleep_ms(long ms) {
  struct timespec t = {ms / 1000, (ms % 1000) * 1000000L};
  nanosleep(&t, NULL);
}

static void write_file(const char *path, const char *value) {
  int fd = open(path, O_WRONLY);
  if (fd < 0) return;
  if (write(fd, value, strlen(value)) < 0) say("write %s: %s", path, strerror(errno));
  close(fd);
}

static long read_key(const char *path, const char *key) {
  char buf[4096];
  int fd = open(path, O_RDONLY);
  if (fd < 0) return 0;
  ssize_t n = read(fd, buf, sizeof buf - 1);
  close(fd);
  if (n <= 0) return 0;
  buf[n] = 0;
  size_t k = strlen(key);
  for (char *l = buf; l && *l; l = strchr(l, '\n') ? strchr(l, '\n') + 1 : NULL) {
    if (strncmp(l, key, k) == 0 && l[k] == ' ') return atol(l + k + 1);
  }
  return 0;
}

/* Loads the modules listed, in order, in /lib/modules/load. */
static void load_modules(void) {
  FILE *f = fopen("/lib/modules/load", "r");
  if (!f) return;
  char name[256];
  while (fgets(name, sizeof name, f)) {
    name[strcspn(name, "\n")] = 0;
    if (!*name) continue;
    char path[512];
    snprintf(path, sizeof path, "/lib/modules/%s", name);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
      say("module %s: %s", name, strerror(errno));
      continue;
    }
    if (syscall(SYS_finit_module, fd, "", 0) != 0 && errno != EEXIST)
      say("module %s: %s", name, strerror(errno));
    close(fd);
  }
  fclose(f);
}

/* Mounts the 9p share `tag` at `dir`, waiting for its device to be probed. Every error is
 * retried: while the virtio devices are probed a mount can fail in several ways (under software
 * emulation on a busy host, once in about 40 boots it failed at once, before this retried all),
 * and the guest's clock can run fast there, so the bound is generous. */
static int mount_share(const char *tag, const char *dir) {
  int last = 0;
  for (int i = 0; i < 1500; i++) {
    if (mount(tag, dir, "9p", 0, "trans=virtio,version=9p2000.L,msize=262144,cache=none") == 0)
      return 0;
    if (errno != last) {
      last = errno;
      say("mount %s: %s (retrying)", tag, strerror(errno));
    }
    sleep_ms(10);
  }
  errno = last;
  return -1;
}

/* The device of the virtio serial port named `name`, opened with `flags`. */
static int open_port(const char *name, int flags) {
  for (int i = 0; i < 500; i++) {
    DIR *d = opendir("/sys/class/virtio-ports");
    struct dirent *e;
    while (d && (e = readdir(d))) {
      if (e->d_name[0] == '.') continue;
      char path[512], got[64] = {0};
      snprintf(path, sizeof path, "/sys/class/virtio-ports/%s/name", e->d_name);
      int fd = open(path, O_RDONLY);
      if (fd < 0) continue;
      ssize_t n = read(fd, got, sizeof got - 1);
      close(fd);
      if (n > 0 && got[n - 1] == '\n') got[n - 1] = 0;
      if (strcmp(got, name) == 0) {
        snprintf(path, sizeof path, "/dev/%s", e->d_name);
        closedir(d);
        int p = -1;
        for (int j = 0; j < 500 && p < 0; j++) {
          p = open(path, flags | O_NOCTTY);
          if (p < 0) sleep_ms(10);
        }
        return p;
      }
    }
    if (d) closedir(d);
    sleep_ms(10);
  }
  return -1;
}

static void mkdirs(const char *path) {
  char p[4096];
  snprintf(p, sizeof p, "%s", path);
  for (char *s = p + 1; *s; s++) {
    if (*s == '/') {
      *s = 0;
      mkdir(p, 0755);
      *s = '/';
    }
  }
  mkdir(p, 0755);
}

int main(void) {
  mount("proc", "/proc", "proc", 0, NULL);
  mount("sysfs", "/sys", "sysfs", 0, NULL);
  mount("devtmpfs", "/dev", "devtmpfs", 0, NULL);
  /* Standard input, output and error open before anything else (the initramfs has no
   * /dev/console of its own, so the kernel may start this without them): every descriptor
   * opened later is above 2, and what this agent says reaches the console log. */
  for (int i = 0; i < 3; i++) {
    if (fcntl(i, F_GETFD) >= 0) continue;
    int f = open(i == 0 ? "/dev/null" : "/dev/console", (i == 0 ? O_RDONLY : O_WRONLY) | O_NOCTTY);
    if (f < 0) f = open("/dev/null", O_RDWR);
    if (f >= 0 && f != i) {
      dup2(f, i);
      close(f);
    }
  }
  mount("tmpfs", "/tmp", "tmpfs", 0, "mode=1777");
  mount("cgroup2", "/sys/fs/cgroup", "cgroup2", 0, NULL);
  load_modules();
  mkdirs(CTL);
  if (mount_share("ctl", CTL) != 0) fail("mount the control share");

  /* The spec. */
  static char spec[1 << 20];
  int fd = open(CTL "/spec", O_RDONLY);
  if (fd < 0) fail("open the spec");
  size_t len = 0;
  ssize_t n;
  while ((n = read(fd, spec + len, sizeof spec - 1 - len)) > 0) len += n;
  close(fd);
  char *argv[4096], *envp[4096], *cwd = "/";
  int argc = 0, envc = 0, probe = 0;
  long long memory = 0, pids = 0, fsize = 0, cpu = 0;
  for (size_t i = 0; i < len;) {
    char *k = spec + i;
    i += strlen(k) + 1;
    if (i >= len) break;
    char *v = spec + i;
    i += strlen(v) + 1;
    if (!strcmp(k, "cwd")) cwd = v;
    else if (!strcmp(k, "memory")) memory = atoll(v);
    else if (!strcmp(k, "pids")) pids = atoll(v);
    else if (!strcmp(k, "fsize")) fsize = atoll(v);
    else if (!strcmp(k, "cpu")) cpu = atoll(v);
    else if (!strcmp(k, "probe")) probe = 1;
    else if (!strcmp(k, "arg") && argc < 4095) argv[argc++] = v;
    else if (!strcmp(k, "env") && envc < 4095) envp[envc++] = v;
  }
  argv[argc] = NULL;
  envp[envc] = NULL;
  if (probe) {
    /* The host asks whether this accelerator boots the guest at all. */
    fd = open(CTL "/status", O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd >= 0) {
      dprintf(fd, "exit 0\n");
      close(fd);
    }
    power_off();
  }
  if (argc == 0) {
    errno = EINVAL;
    fail("the spec has no command");
  }
  mkdirs(cwd);
  if (mount_share("work", cwd) != 0) fail("mount the working directory");

  say("mounted");
  int out = open_port("stdout", O_WRONLY), err = open_port("stderr", O_WRONLY);
  /* The agent's stdin: QEMU's, which ends (the port's host side closes) at its end of file. */
  int in = open_port("stdin", O_RDONLY);
  say("ports %d %d %d", out, err, in);
  if (out < 0 || err < 0) fail("open the output ports");
  if (in < 0) in = open("/dev/null", O_RDONLY);

  /* The agent's own group: its memory and process limits, its OOM kills counted. */
  write_file("/sys/fs/cgroup/cgroup.subtree_control", "+memory +pids");
  mkdir(CG, 0755);
  char num[64];
  if (memory > 0) {
    snprintf(num, sizeof num, "%lld", memory);
    write_file(CG "/memory.max", num);
    write_file(CG "/memory.oom.group", "1");
  }
  if (pids > 0) {
    snprintf(num, sizeof num, "%lld", pids);
    write_file(CG "/pids.max", num);
  }

  /* From here on the agent's command may have run: the host never boots this VM again. */
  int started = open(CTL "/started", O_WRONLY | O_CREAT | O_TRUNC, 0644);
  if (started < 0) fail("write the start mark");
  close(started);
  pid_t child = fork();
  if (child < 0) fail("fork");
  if (child == 0) {
    snprintf(num, sizeof num, "%d", getpid());
    write_file(CG "/cgroup.procs", num);
    setsid();
    if (fsize > 0) {
      struct rlimit r = {fsize, fsize};
      setrlimit(RLIMIT_FSIZE, &r);
    }
    if (cpu > 0) {
      /* Soft below hard: SIGXCPU first, as on the host. */
      struct rlimit r = {cpu, cpu + 1};
      setrlimit(RLIMIT_CPU, &r);
    }
    dup2(in, 0);
    dup2(out, 1);
    dup2(err, 2);
    if (chdir(cwd) != 0) {
      dprintf(2, "symbiont: cannot enter %s in the VM: %s\n", cwd, strerror(errno));
      _exit(125);
    }
    /* PATH from the agent's environment; the guest's own directories where it has none. */
    for (int i = 0; i < envc; i++)
      if (!strncmp(envp[i], "PATH=", 5)) setenv("PATH", envp[i] + 5, 1);
    if (!getenv("PATH")) setenv("PATH", "/usr/sbin:/usr/bin:/sbin:/bin", 1);
    char *const *env = envp;
    /* execvpe searches the PATH given in the calling environment. */
    execvpe(argv[0], argv, env);
    dprintf(2, "symbiont: %s: %s (the VM has busybox's commands only)\n", argv[0], strerror(errno));
    _exit(errno == ENOENT ? 127 : 126);
  }
  say("started %d", child);
  int status = 0;
  long refused_told = 0;
  for (;;) {
    pid_t w = waitpid(-1, &status, WNOHANG);
    if (w == child) break;
    if (w < 0 && errno != EINTR) fail("wait");
    if (w > 0) continue;
    if (pids > 0) {
      long r = read_key(CG "/pids.events", "max");
      if (r > refused_told) {
        refused_told = r;
        int f = open(CTL "/pids_refused.new", O_WRONLY | O_CREAT | O_TRUNC, 0644);
        if (f >= 0) {
          dprintf(f, "%ld\n", r);
          close(f);
          rename(CTL "/pids_refused.new", CTL "/pids_refused");
        }
      }
    }
    sleep_ms(50);
  }
  /* Whatever the agent left behind ends with it. */
  write_file(CG "/cgroup.kill", "1");
  long oom = read_key(CG "/memory.events", "oom_kill");
  long refused = read_key(CG "/pids.events", "max");
  fd = open(CTL "/status", O_WRONLY | O_CREAT | O_TRUNC, 0644);
  if (fd < 0) fail("write the status");
  if (WIFEXITED(status)) dprintf(fd, "exit %d\n", WEXITSTATUS(status));
  else dprintf(fd, "signal %d\n", WTERMSIG(status));
  dprintf(fd, "oom %ld\npids_refused %ld\n", oom, refused);
  close(fd);
  close(out);
  close(err);
  power_off();
  return 0;
}
