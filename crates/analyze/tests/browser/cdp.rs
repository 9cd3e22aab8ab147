//! A minimal Chrome DevTools Protocol driver over `--remote-debugging-pipe`
//! (Debian's chromium, headless; nothing downloaded), and the checker the
//! browser tests apply to a rendered page: what the browser built and drew,
//! measured in the page after load, plus the errors and requests it
//! reported while loading.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::{channel, Receiver};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

/// How long any one browser step may take before the test gives up.
const STEP: Duration = Duration::from_secs(60);

/// The chromium binary: `SNOOP_CHROMIUM`, else the first of the usual
/// names on PATH.
pub fn find_chromium() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("SNOOP_CHROMIUM") {
        return Some(PathBuf::from(p));
    }
    let path = std::env::var_os("PATH")?;
    for dir in std::env::split_paths(&path) {
        for name in ["chromium", "chromium-browser", "google-chrome"] {
            let p = dir.join(name);
            if p.is_file() {
                return Some(p);
            }
        }
    }
    None
}

/// A headless browser and one page (a flattened session on one target).
pub struct Browser {
    child: Child,
    to: ChildStdin,
    from: Receiver<Value>,
    next: u64,
    session: String,
    /// Events received, oldest first, since the last [`Browser::open`].
    pub events: Vec<Value>,
}

impl Browser {
    /// Start `chromium` with a fresh profile in `profile`, at a window
    /// `width` CSS pixels wide.
    pub fn launch(chromium: &Path, profile: &Path, width: u32) -> Browser {
        // The protocol runs over the child's fds 3 (commands in) and 4
        // (replies out): the shell moves our pipes there before exec.
        let mut child = Command::new("sh")
            .arg("-c")
            .arg(r#"exec "$0" "$@" 3<&0 4>&1 0</dev/null 1>&2"#)
            .arg(chromium)
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--no-first-run",
                "--hide-scrollbars",
                "--remote-debugging-pipe",
            ])
            .arg(format!("--user-data-dir={}", profile.display()))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("starting {}: {e}", chromium.display()));
        let to = child.stdin.take().unwrap();
        let mut out = child.stdout.take().unwrap();
        let (tx, from) = channel();
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            let mut chunk = [0u8; 65536];
            loop {
                let n = match out.read(&mut chunk) {
                    Ok(0) | Err(_) => return,
                    Ok(n) => n,
                };
                buf.extend_from_slice(&chunk[..n]);
                while let Some(end) = buf.iter().position(|&b| b == 0) {
                    let msg: Vec<u8> = buf.drain(..=end).collect();
                    let Ok(v) = serde_json::from_slice::<Value>(&msg[..end]) else {
                        continue;
                    };
                    if tx.send(v).is_err() {
                        return;
                    }
                }
            }
        });
        let mut b = Browser {
            child,
            to,
            from,
            next: 0,
            session: String::new(),
            events: Vec::new(),
        };
        let target = b.call("Target.createTarget", json!({"url": "about:blank"}));
        let attached = b.call(
            "Target.attachToTarget",
            json!({"targetId": target["targetId"], "flatten": true}),
        );
        b.session = attached["sessionId"].as_str().unwrap().to_string();
        for m in [
            "Runtime.enable",
            "Log.enable",
            "Network.enable",
            "Page.enable",
        ] {
            b.call(m, json!({}));
        }
        b.resize(width, 900);
        b
    }

    fn recv(&mut self, deadline: Instant, what: &str) -> Value {
        let left = deadline.saturating_duration_since(Instant::now());
        match self.from.recv_timeout(left) {
            Ok(v) => v,
            Err(e) => panic!("chromium: no answer to {what} ({e})"),
        }
    }

    /// Send a command (to the page's session once attached) and wait for
    /// its result, keeping the events that arrive meanwhile.
    pub fn call(&mut self, method: &str, params: Value) -> Value {
        self.next += 1;
        let id = self.next;
        let mut msg = json!({"id": id, "method": method, "params": params});
        if !self.session.is_empty() {
            msg["sessionId"] = json!(self.session);
        }
        let mut bytes = serde_json::to_vec(&msg).unwrap();
        bytes.push(0);
        self.to
            .write_all(&bytes)
            .unwrap_or_else(|e| panic!("chromium: sending {method}: {e}"));
        let deadline = Instant::now() + STEP;
        loop {
            let v = self.recv(deadline, method);
            if v["id"] == id {
                if let Some(e) = v.get("error") {
                    panic!("chromium: {method} failed: {e}");
                }
                return v["result"].clone();
            }
            if v.get("method").is_some() {
                self.events.push(v);
            }
        }
    }

    /// Wait for the event `method` (already received or still to come).
    fn wait_event(&mut self, method: &str) {
        if self.events.iter().any(|e| e["method"] == method) {
            return;
        }
        let deadline = Instant::now() + STEP;
        loop {
            let v = self.recv(deadline, method);
            let done = v["method"] == method;
            if v.get("method").is_some() {
                self.events.push(v);
            }
            if done {
                return;
            }
        }
    }

    /// Set the window (viewport) size in CSS pixels.
    pub fn resize(&mut self, width: u32, height: u32) {
        self.call(
            "Emulation.setDeviceMetricsOverride",
            json!({"width": width, "height": height, "deviceScaleFactor": 1, "mobile": false}),
        );
    }

    /// Load `url` and wait for its load event; the events since are the
    /// page's.
    pub fn open(&mut self, url: &str) {
        self.events.clear();
        self.call("Page.navigate", json!({"url": url}));
        self.wait_event("Page.loadEventFired");
    }

    /// Evaluate `expr` in the page and return its value.
    pub fn eval(&mut self, expr: &str) -> Value {
        let r = self.call(
            "Runtime.evaluate",
            json!({"expression": expr, "returnByValue": true}),
        );
        if let Some(e) = r.get("exceptionDetails") {
            panic!("evaluating in the page: {e}");
        }
        r["result"]["value"].clone()
    }

    /// A PNG of the whole page at the current width.
    pub fn screenshot(&mut self) -> Vec<u8> {
        let m = self.call("Page.getLayoutMetrics", json!({}));
        let w = m["cssContentSize"]["width"].as_f64().unwrap_or(800.0);
        let h = m["cssContentSize"]["height"].as_f64().unwrap_or(600.0);
        let r = self.call(
            "Page.captureScreenshot",
            json!({"format": "png", "captureBeyondViewport": true,
                   "clip": {"x": 0, "y": 0, "width": w, "height": h.min(16000.0), "scale": 1}}),
        );
        base64(r["data"].as_str().expect("screenshot data"))
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn base64(s: &str) -> Vec<u8> {
    let val = |c: u8| match c {
        b'A'..=b'Z' => c - b'A',
        b'a'..=b'z' => c - b'a' + 26,
        b'0'..=b'9' => c - b'0' + 52,
        b'+' => 62,
        b'/' => 63,
        _ => panic!("bad base64 byte {c}"),
    };
    let bytes: Vec<u8> = s.bytes().filter(|&c| c != b'=').collect();
    let mut out = Vec::with_capacity(bytes.len() * 3 / 4);
    for chunk in bytes.chunks(4) {
        let mut n = 0u32;
        for (i, &c) in chunk.iter().enumerate() {
            n |= u32::from(val(c)) << (18 - 6 * i);
        }
        let k = chunk.len() - 1;
        out.extend_from_slice(&n.to_be_bytes()[1..1 + k]);
    }
    out
}

/// Measures the loaded page in the browser: per SVG chart (outermost
/// `<svg>`) the data marks
/// the browser drew (elements of the chart's `g.marks` layer with a
/// rendered box of positive width and height that are visible), marks
/// without a hover `<title>`, overlapping axis labels (of those shown),
/// rendered width against its container's content box, smallest rendered
/// font; for the page, scripts,
/// sideways scrolling, in-page links without a target, and the headings.
pub const MEASURE: &str = r##"(() => {
  const out = {charts: [], scripts: document.scripts.length,
               overflow: document.documentElement.scrollWidth - window.innerWidth,
               broken_links: [], headings: []};
  for (const a of document.querySelectorAll('a[href^="#"]')) {
    const id = decodeURIComponent(a.getAttribute('href').slice(1));
    if (!document.getElementById(id)) out.broken_links.push(a.getAttribute('href'));
  }
  out.headings = [...document.querySelectorAll('h2, h3')].map(h => h.textContent);
  const visible = el => {
    const s = getComputedStyle(el);
    return s.display !== 'none' && s.visibility !== 'hidden' && parseFloat(s.opacity) > 0
      && (s.fill !== 'none' || s.stroke !== 'none');
  };
  document.querySelectorAll('svg:not(svg svg)').forEach((svg, i) => {
    const name = svg.getAttribute('aria-label') || ('svg #' + (i + 1));
    const box = svg.getBoundingClientRect();
    const ps = getComputedStyle(svg.parentElement);
    const holder = svg.parentElement.clientWidth - parseFloat(ps.paddingLeft) - parseFloat(ps.paddingRight);
    const vb = svg.viewBox && svg.viewBox.baseVal;
    const scale = vb && vb.width ? box.width / vb.width : 1;
    let marks = 0, untitled = 0;
    const titles = [];
    const layer = svg.querySelector('g.marks');
    if (layer) for (const el of layer.querySelectorAll('rect, polyline, polygon, path, circle, line')) {
      const b = el.getBBox();
      if (b.width > 0 && b.height > 0 && visible(el)) marks++;
      const t = el.querySelector(':scope > title');
      if (t) titles.push(t.textContent); else untitled++;
    }
    const labels = [...svg.querySelectorAll('g.xaxis text')].map(t => t.getBoundingClientRect())
      .filter(r => r.width > 0);
    let overlaps = 0;
    for (let k = 1; k < labels.length; k++) if (labels[k].left < labels[k - 1].right) overlaps++;
    let font = Infinity;
    for (const t of svg.querySelectorAll('text')) {
      font = Math.min(font, parseFloat(getComputedStyle(t).fontSize) * scale);
    }
    out.charts.push({name, marks, untitled, overlaps, titles,
                     width: box.width, holder, font: isFinite(font) ? font : 0});
  });
  return out;
})()"##;

/// Smallest readable chart text, CSS px.
const MIN_FONT_PX: f64 = 8.0;

/// What is wrong with a page measured by [`MEASURE`], given the events the
/// browser sent while loading `url`: every problem as a sentence naming
/// the chart or the error (empty when the page is fine).
pub fn problems(page: &Value, events: &[Value], url: &str) -> Vec<String> {
    let mut p = Vec::new();
    let charts = page["charts"].as_array().cloned().unwrap_or_default();
    if charts.is_empty() {
        p.push("the page has no chart".to_string());
    }
    for c in &charts {
        let name = c["name"].as_str().unwrap_or("?");
        if c["marks"].as_u64().unwrap_or(0) == 0 {
            p.push(format!("chart {name:?} has no drawn marks"));
        }
        if let Some(n) = c["untitled"].as_u64().filter(|&n| n > 0) {
            p.push(format!("chart {name:?}: {n} marks without a hover title"));
        }
        if let Some(n) = c["overlaps"].as_u64().filter(|&n| n > 0) {
            p.push(format!(
                "chart {name:?}: {n} axis labels overlap their neighbour"
            ));
        }
        let (w, holder) = (
            c["width"].as_f64().unwrap_or(0.0),
            c["holder"].as_f64().unwrap_or(0.0),
        );
        if w + 1.0 < holder {
            p.push(format!(
                "chart {name:?} is {w:.0} px wide in a {holder:.0} px column (not full width)"
            ));
        }
        let font = c["font"].as_f64().unwrap_or(0.0);
        if font < MIN_FONT_PX {
            p.push(format!(
                "chart {name:?}: text drawn at {font:.1} px (below {MIN_FONT_PX} px)"
            ));
        }
    }
    if page["scripts"].as_u64() != Some(0) {
        p.push(format!("the page has {} scripts", page["scripts"]));
    }
    if let Some(o) = page["overflow"].as_f64().filter(|&o| o > 0.0) {
        p.push(format!("the page scrolls sideways by {o} px"));
    }
    for l in page["broken_links"].as_array().into_iter().flatten() {
        p.push(format!("link {l} has no target"));
    }
    for e in events {
        let params = &e["params"];
        match e["method"].as_str().unwrap_or("") {
            "Runtime.exceptionThrown" => p.push(format!(
                "script error: {}",
                params["exceptionDetails"]["exception"]["description"]
                    .as_str()
                    .or(params["exceptionDetails"]["text"].as_str())
                    .unwrap_or("?")
            )),
            "Runtime.consoleAPICalled"
                if matches!(params["type"].as_str(), Some("error" | "assert")) =>
            {
                p.push(format!("console error: {}", params["args"]))
            }
            "Log.entryAdded" if params["entry"]["level"] == "error" => p.push(format!(
                "browser error: {} {}",
                params["entry"]["text"].as_str().unwrap_or("?"),
                params["entry"]["url"].as_str().unwrap_or("")
            )),
            "Network.requestWillBeSent" => {
                let u = params["request"]["url"].as_str().unwrap_or("");
                if u != url {
                    p.push(format!("the page requested {u}"));
                }
            }
            "Network.loadingFailed" => p.push(format!(
                "loading failed: {}",
                params["errorText"].as_str().unwrap_or("?")
            )),
            _ => {}
        }
    }
    p
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chart(name: &str, marks: u64) -> Value {
        json!({"name": name, "marks": marks, "untitled": 0, "overlaps": 0, "titles": [],
               "width": 800.0, "holder": 800.0, "font": 12.0})
    }

    fn page(charts: Vec<Value>) -> Value {
        json!({"charts": charts, "scripts": 0, "overflow": 0, "broken_links": [], "headings": []})
    }

    #[test]
    fn an_empty_chart_is_a_problem_naming_it() {
        assert!(problems(&page(vec![chart("rate", 3)]), &[], "file:///r.html").is_empty());
        let p = problems(
            &page(vec![chart("rate", 3), chart("sizes", 0)]),
            &[],
            "file:///r.html",
        );
        assert_eq!(p, ["chart \"sizes\" has no drawn marks"]);
        let p = problems(&page(vec![]), &[], "file:///r.html");
        assert_eq!(p, ["the page has no chart"]);
    }

    #[test]
    fn errors_requests_and_cramped_charts_are_problems() {
        let mut c = chart("rate", 2);
        c["overlaps"] = json!(2);
        c["width"] = json!(500.0);
        c["font"] = json!(5.0);
        c["untitled"] = json!(1);
        let ev = [
            json!({"method": "Runtime.exceptionThrown",
                   "params": {"exceptionDetails": {"text": "Uncaught", "exception": {"description": "Error: boom"}}}}),
            json!({"method": "Network.requestWillBeSent", "params": {"request": {"url": "file:///r.html"}}}),
            json!({"method": "Network.requestWillBeSent", "params": {"request": {"url": "http://x/y.png"}}}),
        ];
        let p = problems(&page(vec![c]), &ev, "file:///r.html");
        assert_eq!(p.len(), 6, "{p:#?}");
        assert!(p.iter().any(|s| s.contains("Error: boom")), "{p:#?}");
        assert!(
            p.iter().any(|s| s == "the page requested http://x/y.png"),
            "{p:#?}"
        );
        assert!(p.iter().any(|s| s.contains("not full width")), "{p:#?}");
    }

    #[test]
    fn base64_decodes() {
        assert_eq!(base64("aGVsbG8="), b"hello");
        assert_eq!(base64("aGVsbG8h"), b"hello!");
        assert_eq!(base64("aGk="), b"hi");
    }
}
