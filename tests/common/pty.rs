//! A pseudo-terminal driver for end-to-end tests and benchmarks: the program under test
//! draws into a real pty, a terminal emulator (vt100) keeps the screen, keys go in as bytes.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub struct Pty {
    pub child: Child,
    master: std::fs::File,
    slave: OwnedFd,
    screen: Arc<Mutex<vt100::Parser>>,
    raw: Arc<Mutex<Vec<u8>>>,
}

impl Pty {
    /// Starts `cmd` as the session leader of a new pseudo-terminal of `w` x `h`.
    pub fn spawn(mut cmd: Command, w: u16, h: u16) -> Pty {
        let ws = nix::pty::Winsize {
            ws_row: h,
            ws_col: w,
            ws_xpixel: 0,
            ws_ypixel: 0,
        };
        let p = nix::pty::openpty(Some(&ws), None).unwrap();
        let slave_fd = p.slave.as_raw_fd();
        cmd.env("TERM", "xterm-256color")
            .stdin(Stdio::from(p.slave.try_clone().unwrap()))
            .stdout(Stdio::from(p.slave.try_clone().unwrap()))
            .stderr(Stdio::from(p.slave.try_clone().unwrap()));
        // SAFETY: the hook runs in the forked child before exec and makes only two
        // async-signal-safe system calls (setsid, ioctl) on its own standard input.
        unsafe {
            cmd.pre_exec(move || {
                libc::setsid();
                libc::ioctl(0, libc::TIOCSCTTY as _, 0);
                let _ = slave_fd;
                Ok(())
            });
        }
        let child = cmd.spawn().unwrap();
        let master = std::fs::File::from(p.master);
        let screen = Arc::new(Mutex::new(vt100::Parser::new(h, w, 0)));
        let raw = Arc::new(Mutex::new(Vec::new()));
        let (mut rd, sc, rw) = (master.try_clone().unwrap(), screen.clone(), raw.clone());
        std::thread::spawn(move || {
            let mut buf = [0u8; 65536];
            while let Ok(n) = rd.read(&mut buf) {
                if n == 0 {
                    break;
                }
                sc.lock().unwrap().process(&buf[..n]);
                rw.lock().unwrap().extend_from_slice(&buf[..n]);
            }
        });
        Pty {
            child,
            master,
            slave: p.slave,
            screen,
            raw,
        }
    }

    pub fn text(&self) -> String {
        self.screen.lock().unwrap().screen().contents()
    }

    pub fn wait_for(&self, what: &str, within: Duration) -> String {
        let until = Instant::now() + within;
        loop {
            let t = self.text();
            if t.contains(what) {
                return t;
            }
            if Instant::now() > until {
                panic!("`{what}` never appeared; screen:\n{t}");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn line_with(&self, what: &str) -> Option<(u16, String)> {
        self.text()
            .lines()
            .enumerate()
            .find(|(_, l)| l.contains(what))
            .map(|(i, l)| (i as u16, l.to_string()))
    }

    pub fn send(&mut self, keys: &str) {
        self.master.write_all(keys.as_bytes()).unwrap();
        self.master.flush().unwrap();
        std::thread::sleep(Duration::from_millis(150));
    }

    pub fn wait_exit(&mut self, within: Duration) -> Option<i32> {
        let until = Instant::now() + within;
        loop {
            if let Some(st) = self.child.try_wait().unwrap() {
                return st.code();
            }
            if Instant::now() > until {
                let _ = self.child.kill();
                panic!("the dashboard did not exit; screen:\n{}", self.text());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Whether the terminal is back in cooked mode (canonical input, echo).
    pub fn cooked(&self) -> bool {
        let t = nix::sys::termios::tcgetattr(&self.slave).unwrap();
        use nix::sys::termios::LocalFlags;
        t.local_flags.contains(LocalFlags::ICANON) && t.local_flags.contains(LocalFlags::ECHO)
    }

    /// Cells of the screen drawn in any colour but the default, foreground or background.
    pub fn coloured_cells(&self) -> usize {
        let p = self.screen.lock().unwrap();
        let sc = p.screen();
        let (h, w) = sc.size();
        let mut n = 0;
        for y in 0..h {
            for x in 0..w {
                if let Some(c) = sc.cell(y, x) {
                    if c.fgcolor() != vt100::Color::Default || c.bgcolor() != vt100::Color::Default
                    {
                        n += 1;
                    }
                }
            }
        }
        n
    }

    /// The screen's text drawn in reverse video, in reading order.
    pub fn reversed_text(&self) -> String {
        let p = self.screen.lock().unwrap();
        let sc = p.screen();
        let (h, w) = sc.size();
        let mut out = String::new();
        for y in 0..h {
            for x in 0..w {
                if let Some(c) = sc.cell(y, x).filter(|c| c.inverse()) {
                    out.push_str(&c.contents());
                }
            }
        }
        out
    }

    /// Reads the emulated screen: every cell with its colours and attributes.
    pub fn with_screen<R>(&self, f: impl FnOnce(&vt100::Screen) -> R) -> R {
        f(self.screen.lock().unwrap().screen())
    }

    /// Everything the program wrote to the terminal so far, escape sequences and all.
    pub fn written(&self) -> String {
        String::from_utf8_lossy(&self.raw.lock().unwrap()).into_owned()
    }

    pub fn left_alternate_screen(&self) -> bool {
        let raw = self.raw.lock().unwrap();
        raw.windows(8).any(|w| w == b"\x1b[?1049l")
    }
}

impl Drop for Pty {
    // A failed test must not leave its dashboard, or its agents, running.
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(self.child.id() as i32),
                nix::sys::signal::Signal::SIGTERM,
            );
            let until = Instant::now() + Duration::from_secs(10);
            while self.child.try_wait().ok().flatten().is_none() && Instant::now() < until {
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}
