//! The README's screenshot: the dashboard on the demo agents (`assets/demo.dsl`), drawn by
//! the real binary in a pseudo-terminal, captured once the leaking agent is warned about and
//! its detail pane shows (before it reaches its limit), and written as text (`assets/dashboard.txt`) and as an SVG with the
//! screen's colours (`assets/dashboard.svg`). Run by `scripts/screenshot`, not by the suite
//! (`#[ignore]`): it rewrites files of the repository and takes about ten seconds.
#![cfg(unix)]

mod common;

use std::fmt::Write as _;
use std::path::PathBuf;
use std::time::Duration;

use common::pty::Pty;
use common::{assert_none_left, bin, Scratch};

const W: u16 = 140;
const H: u16 = 36;

#[test]
#[ignore = "rewrites assets/dashboard.{txt,svg}: run scripts/screenshot"]
fn readme_screenshot() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let s = Scratch::new("screenshot");
    // The demo as a user starts it, with no config of theirs and its data in the scratch
    // directory.
    let mut cmd = std::process::Command::new(bin());
    cmd.args(["run", "--native"])
        .arg(root.join("assets/demo.dsl"))
        .current_dir(s.work());
    for (k, _) in std::env::vars() {
        if k.starts_with("SYMBIONT_") || k.starts_with("XDG_") || k == "NO_COLOR" {
            cmd.env_remove(k);
        }
    }
    cmd.env("HOME", s.path("home"))
        .env("XDG_STATE_HOME", s.path("state"))
        .env("XDG_CONFIG_HOME", s.path("config"))
        .env("XDG_RUNTIME_DIR", s.path("run"));
    let mut p = Pty::spawn(cmd, W, H);
    for agent in ["Steady", "Leaky", "Slowpoke", "Chatty", "Forker"] {
        p.wait_for(agent, Duration::from_secs(15));
    }
    // The leaking agent selected and its detail pane open, then as soon as it is past 80 % of
    // its memory limit (a second later it has reached the limit and been killed).
    p.send("j");
    p.send("\r");
    p.wait_for("limits:", Duration::from_secs(5));
    p.wait_for("▲mem", Duration::from_secs(20));
    p.wait_for("limit in", Duration::from_secs(5));
    let (text, svg) = p.with_screen(|sc| (sc.contents(), svg(sc)));
    p.send("q");
    p.send("y");
    p.wait_exit(Duration::from_secs(30));
    for agent in ["Steady", "Leaky", "Slowpoke", "Chatty", "Forker"] {
        assert_none_left(agent);
    }
    let text: String = text
        .lines()
        .map(|l| format!("{}\n", l.trim_end()))
        .collect();
    assert!(
        text.contains("Leaky") && text.contains("NATIVE: NO ISOLATION"),
        "{text}"
    );
    std::fs::write(root.join("assets/dashboard.txt"), text).unwrap();
    std::fs::write(root.join("assets/dashboard.svg"), svg).unwrap();
}

/// The xterm colour of an indexed colour: the 16 system colours, the 6x6x6 cube, the greys.
fn indexed(i: u8) -> (u8, u8, u8) {
    const SYSTEM: [(u8, u8, u8); 16] = [
        (0x1e, 0x1e, 0x1e),
        (0xcd, 0x31, 0x31),
        (0x0d, 0xbc, 0x79),
        (0xe5, 0xe5, 0x10),
        (0x24, 0x72, 0xc8),
        (0xbc, 0x3f, 0xbc),
        (0x11, 0xa8, 0xcd),
        (0xe5, 0xe5, 0xe5),
        (0x66, 0x66, 0x66),
        (0xf1, 0x4c, 0x4c),
        (0x23, 0xd1, 0x8b),
        (0xf5, 0xf5, 0x43),
        (0x3b, 0x8e, 0xea),
        (0xd6, 0x70, 0xd6),
        (0x29, 0xb8, 0xdb),
        (0xff, 0xff, 0xff),
    ];
    match i {
        0..=15 => SYSTEM[i as usize],
        16..=231 => {
            let i = i - 16;
            let c = |v: u8| if v == 0 { 0 } else { 55 + v * 40 };
            (c(i / 36), c(i / 6 % 6), c(i % 6))
        }
        _ => {
            let g = 8 + (i - 232) * 10;
            (g, g, g)
        }
    }
}

const FG: (u8, u8, u8) = (0xd4, 0xd4, 0xd4);
const BG: (u8, u8, u8) = (0x1e, 0x1e, 0x1e);

fn colour(c: vt100::Color, default: (u8, u8, u8)) -> String {
    let (r, g, b) = match c {
        vt100::Color::Default => default,
        vt100::Color::Idx(i) => indexed(i),
        vt100::Color::Rgb(r, g, b) => (r, g, b),
    };
    format!("#{r:02x}{g:02x}{b:02x}")
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// The screen as an SVG: a dark terminal, a `<rect>` per run of cells with a background, a
/// `<text>` per word of cells drawn alike.
fn svg(sc: &vt100::Screen) -> String {
    const CW: f64 = 8.4;
    const LH: f64 = 18.0;
    let (rows, cols) = sc.size();
    let (w, h) = (f64::from(cols) * CW + 16.0, f64::from(rows) * LH + 16.0);
    let mut out = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"{h}\" viewBox=\"0 0 {w} {h}\" \
         font-family=\"'DejaVu Sans Mono', Menlo, Consolas, 'Liberation Mono', monospace\" font-size=\"14\">\n\
         <rect width=\"100%\" height=\"100%\" rx=\"6\" fill=\"{}\"/>\n",
        colour(vt100::Color::Default, BG)
    );
    for y in 0..rows {
        let mut x = 0;
        while x < cols {
            let Some(c) = sc.cell(y, x) else { break };
            let style = |c: &vt100::Cell| {
                let (mut fg, mut bg) = (colour(c.fgcolor(), FG), colour(c.bgcolor(), BG));
                if c.inverse() {
                    std::mem::swap(&mut fg, &mut bg);
                }
                (fg, bg, c.bold(), c.underline())
            };
            let st = style(c);
            let mut run = String::new();
            let mut n = 0;
            while x + n < cols {
                let Some(d) = sc.cell(y, x + n) else { break };
                if style(d) != st {
                    break;
                }
                let t = d.contents();
                run.push_str(if t.is_empty() { " " } else { &t });
                n += 1;
            }
            let (px, py) = (8.0 + f64::from(x) * CW, 8.0 + f64::from(y) * LH);
            let width = f64::from(n) * CW;
            let (fg, bg, bold, underline) = st;
            if bg != colour(vt100::Color::Default, BG) {
                let _ = writeln!(
                    out,
                    "<rect x=\"{px:.1}\" y=\"{py:.1}\" width=\"{width:.1}\" height=\"{LH}\" fill=\"{bg}\"/>"
                );
            }
            // Each glyph at its own cell (a list of x positions), so that the columns line up
            // in any monospace font and no viewer collapses the spaces between them.
            let chars: Vec<char> = run.chars().collect();
            let mut i = 0;
            while i < chars.len() {
                if chars[i] == ' ' {
                    i += 1;
                    continue;
                }
                let start = i;
                while i < chars.len() && chars[i] != ' ' {
                    i += 1;
                }
                let xs: Vec<String> = (start..i)
                    .map(|k| format!("{:.1}", px + k as f64 * CW))
                    .collect();
                let word: String = chars[start..i].iter().collect();
                let _ = writeln!(
                    out,
                    "<text x=\"{}\" y=\"{:.1}\" fill=\"{fg}\"{}{}>{}</text>",
                    xs.join(" "),
                    py + LH * 0.75,
                    if bold { " font-weight=\"bold\"" } else { "" },
                    if underline {
                        " text-decoration=\"underline\""
                    } else {
                        ""
                    },
                    escape(&word)
                );
            }
            x += n.max(1);
        }
    }
    out.push_str("</svg>\n");
    out
}
