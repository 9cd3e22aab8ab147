//! The state and the drawing of `snoop top`'s full-screen view, apart from
//! any terminal: messages go in ([`TopModel::add`]), every interval
//! [`TopModel::tick`] turns what came in into rates (bit/s) and totals, and
//! [`draw`] paints the current view (processes, connections or remotes),
//! sorted, filtered by name, paused or not, with the keys in a footer. Keys
//! arrive as crossterm events ([`TopModel::key`]). Nothing here reads a
//! clock or a terminal, so the live view, the replay of a trace and the
//! tests (ratatui's `TestBackend`) drive the very same code.

use std::collections::{BTreeSet, HashMap};
use std::fmt::Write as _;
use std::net::IpAddr;

use crossterm::event::{KeyCode, KeyEvent, KeyEventKind, KeyModifiers};
use ratatui::layout::{Constraint, Flex, Layout, Rect};
use ratatui::style::{Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Cell, Paragraph, Row, Table, Wrap};
use ratatui::Frame;
use snoop_format::{addr, comm_str, Direction, Flow, Shown};

use crate::human_bytes;

/// Which table the view shows (Tab cycles through them in this order).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum View {
    /// One row per process.
    Processes,
    /// One row per connection (process, protocol, local and remote end).
    Connections,
    /// One row per remote address.
    Remotes,
}

impl View {
    const ALL: [View; 3] = [View::Processes, View::Connections, View::Remotes];

    fn index(self) -> usize {
        self as usize
    }

    /// The title of the view's tab.
    pub fn title(self) -> &'static str {
        match self {
            View::Processes => "Processes",
            View::Connections => "Connections",
            View::Remotes => "Remotes",
        }
    }

    /// Column headers, in order.
    pub fn columns(self) -> &'static [&'static str] {
        match self {
            View::Processes => &[
                "PID", "COMM", "CONNS", "RX bit/s", "TX bit/s", "RX TOTAL", "TX TOTAL",
            ],
            View::Connections => &[
                "PID", "COMM", "PROTO", "LOCAL", "REMOTE", "RX bit/s", "TX bit/s", "RX TOTAL",
                "TX TOTAL",
            ],
            View::Remotes => &[
                "REMOTE",
                "CONNS",
                "PROCESSES",
                "RX bit/s",
                "TX bit/s",
                "RX TOTAL",
                "TX TOTAL",
            ],
        }
    }

    /// The narrowest each column gets (rates and totals fixed, so the
    /// table does not jitter from one tick to the next).
    fn min_widths(self) -> &'static [u16] {
        match self {
            View::Processes => &[7, 16, 5, 12, 12, 10, 10],
            View::Connections => &[7, 16, 5, 21, 21, 12, 12, 10, 10],
            View::Remotes => &[15, 5, 16, 12, 12, 10, 10],
        }
    }
}

/// Byte counters of one row: what came in this interval, the rates of the
/// last finished interval and the totals up to it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counter {
    /// Received since the last tick.
    pub cur_rx: u64,
    /// Sent since the last tick.
    pub cur_tx: u64,
    /// Receive rate of the last interval, bit/s.
    pub rx_bps: u64,
    /// Send rate of the last interval, bit/s.
    pub tx_bps: u64,
    /// Received up to the last tick.
    pub rx: u64,
    /// Sent up to the last tick.
    pub tx: u64,
    /// Intervals in a row without traffic.
    pub idle: u32,
}

impl Counter {
    fn add(&mut self, bytes: u64, dir: Direction) {
        match dir {
            Direction::Rx => self.cur_rx = self.cur_rx.saturating_add(bytes),
            Direction::Tx => self.cur_tx = self.cur_tx.saturating_add(bytes),
        }
    }

    fn tick(&mut self, elapsed_ns: u64) {
        self.idle = if self.cur_rx == 0 && self.cur_tx == 0 {
            self.idle.saturating_add(1)
        } else {
            0
        };
        self.rx_bps = bits_per_second(self.cur_rx, elapsed_ns);
        self.tx_bps = bits_per_second(self.cur_tx, elapsed_ns);
        self.rx = self.rx.saturating_add(self.cur_rx);
        self.tx = self.tx.saturating_add(self.cur_tx);
        self.cur_rx = 0;
        self.cur_tx = 0;
    }

    fn rate(&self) -> u64 {
        self.rx_bps.saturating_add(self.tx_bps)
    }

    fn total(&self) -> u64 {
        self.rx.saturating_add(self.tx)
    }
}

/// `bytes` over `elapsed_ns`, in bits per second (saturating; 0 for an
/// empty interval).
pub fn bits_per_second(bytes: u64, elapsed_ns: u64) -> u64 {
    if elapsed_ns == 0 {
        return 0;
    }
    let b = u128::from(bytes) * 8 * 1_000_000_000 / u128::from(elapsed_ns);
    u64::try_from(b).unwrap_or(u64::MAX)
}

/// A rate as people read it: `840 bit/s`, `8.0 kbit/s`, `1.5 Mbit/s`,
/// `2.3 Gbit/s` (decimal prefixes, as link speeds are given).
pub fn human_rate(bps: u64) -> String {
    const U: [&str; 6] = ["kbit/s", "Mbit/s", "Gbit/s", "Tbit/s", "Pbit/s", "Ebit/s"];
    if bps < 1000 {
        return format!("{bps} bit/s");
    }
    let mut v = bps as f64 / 1000.0;
    let mut i = 0;
    while v >= 999.95 && i + 1 < U.len() {
        v /= 1000.0;
        i += 1;
    }
    format!("{v:.1} {}", U[i])
}

#[derive(Clone, Debug, Default)]
struct Proc {
    comm: String,
    comm_main: bool,
    c: Counter,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
struct ConnKey {
    pid: u32,
    proto: u8,
    laddr: [u8; 16],
    lport: u16,
    raddr: [u8; 16],
    rport: u16,
}

/// How many intervals in a row without traffic a row stays for: a
/// process, connection or remote quiet for longer leaves the view, so a
/// view left running for days holds what is active, not every socket ever
/// seen.
pub const IDLE_TICKS: u32 = 300;

/// One cell's sort key.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Key {
    Num(u64),
    Text(String),
}

/// A row ready to draw: its cells and the values it sorts by.
#[derive(Clone, Debug)]
struct ViewRow {
    cells: Vec<String>,
    keys: Vec<Key>,
    rate: u64,
    total: u64,
}

/// Whether the footer is taking a filter being typed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
enum Input {
    #[default]
    Keys,
    Filter(String),
}

/// What a key asks of the program running the view.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    /// Nothing beyond redrawing.
    None,
    /// Leave the view (q, Ctrl-C).
    Quit,
}

/// Everything `snoop top`'s view shows: per process, connection and
/// remote, the rates of the last interval and the totals; the view chosen,
/// its sort column and order, the name filter, paused or not.
#[derive(Clone, Debug)]
pub struct TopModel {
    procs: HashMap<u32, Proc>,
    conns: HashMap<ConnKey, Counter>,
    remotes: HashMap<[u8; 16], Counter>,
    /// Elapsed trace or wall time not yet shown (time ticked while paused).
    pending_ns: u64,
    /// Totals and rates as last shown (frozen while paused).
    shown: Option<Box<Shown3>>,
    view: View,
    /// Per view: sort column (None: by traffic, the default) and reversed.
    sort: [(Option<usize>, bool); 3],
    filter: String,
    input: Input,
    paused: bool,
    offset: [usize; 3],
    /// First line, saying what is shown (live, or which trace and where).
    pub status: String,
    /// Ticks so far.
    pub ticks: u64,
}

/// The three views' rows as of the last tick shown.
#[derive(Clone, Debug, Default)]
struct Shown3 {
    rows: [Vec<ViewRow>; 3],
}

impl Default for TopModel {
    fn default() -> Self {
        TopModel {
            procs: HashMap::new(),
            conns: HashMap::new(),
            remotes: HashMap::new(),
            pending_ns: 0,
            shown: None,
            view: View::Processes,
            sort: [(None, false); 3],
            filter: String::new(),
            input: Input::Keys,
            paused: false,
            offset: [0; 3],
            status: String::new(),
            ticks: 0,
        }
    }
}

impl TopModel {
    /// Count one message of thread `flow.tid` of process `flow.pid`.
    /// Messages must come in time order: a process is shown under the
    /// latest name seen, its main thread's over other threads'.
    pub fn add(&mut self, flow: &Flow, bytes: u64, dir: Direction) {
        let p = self.procs.entry(flow.pid).or_default();
        let main = flow.tid == flow.pid;
        if p.comm.is_empty() || (flow.comm[0] != 0 && (main || !p.comm_main)) {
            p.comm = comm_str(&flow.comm);
            p.comm_main |= main && flow.comm[0] != 0;
        }
        p.c.add(bytes, dir);
        let k = ConnKey {
            pid: flow.pid,
            proto: flow.proto,
            laddr: flow.laddr,
            lport: flow.lport,
            raddr: flow.raddr,
            rport: flow.rport,
        };
        self.conns.entry(k).or_default().add(bytes, dir);
        self.remotes.entry(flow.raddr).or_default().add(bytes, dir);
    }

    /// End an interval of `elapsed_ns`: what came in becomes the rates and
    /// joins the totals. While paused the view stays as it was and the time
    /// is kept, so the first interval after the pause covers all of it.
    pub fn tick(&mut self, elapsed_ns: u64) {
        self.ticks += 1;
        self.pending_ns = self.pending_ns.saturating_add(elapsed_ns);
        if self.paused {
            return;
        }
        let ns = std::mem::take(&mut self.pending_ns);
        for p in self.procs.values_mut() {
            p.c.tick(ns);
        }
        for c in self.conns.values_mut() {
            c.tick(ns);
        }
        for r in self.remotes.values_mut() {
            r.tick(ns);
        }
        self.procs.retain(|_, p| p.c.idle <= IDLE_TICKS);
        self.conns.retain(|_, c| c.idle <= IDLE_TICKS);
        self.remotes.retain(|_, c| c.idle <= IDLE_TICKS);
        self.shown = Some(Box::new(self.snapshot()));
    }

    /// Whether the view is paused.
    pub fn paused(&self) -> bool {
        self.paused
    }

    /// The view shown.
    pub fn view(&self) -> View {
        self.view
    }

    /// The name filter ("" when none).
    pub fn filter(&self) -> &str {
        &self.filter
    }

    /// The sort column of the current view (None: by traffic) and whether
    /// the order is reversed.
    pub fn sort(&self) -> (Option<usize>, bool) {
        self.sort[self.view.index()]
    }

    fn snapshot(&self) -> Shown3 {
        let mut conns_of: HashMap<u32, usize> = HashMap::new();
        let mut at_remote: HashMap<[u8; 16], (usize, BTreeSet<u32>)> = HashMap::new();
        for k in self.conns.keys() {
            *conns_of.entry(k.pid).or_default() += 1;
            let r = at_remote.entry(k.raddr).or_default();
            r.0 += 1;
            r.1.insert(k.pid);
        }
        let comm = |pid: u32| {
            self.procs
                .get(&pid)
                .map(|p| p.comm.clone())
                .unwrap_or_default()
        };
        let rate_cells = |c: &Counter, cells: &mut Vec<String>, keys: &mut Vec<Key>| {
            for v in [c.rx_bps, c.tx_bps] {
                cells.push(human_rate(v));
                keys.push(Key::Num(v));
            }
            for v in [c.rx, c.tx] {
                cells.push(human_bytes(v));
                keys.push(Key::Num(v));
            }
        };
        let procs = self
            .procs
            .iter()
            .map(|(&pid, p)| {
                let n = conns_of.get(&pid).copied().unwrap_or(0);
                let mut cells = vec![pid.to_string(), Shown(&p.comm).to_string(), n.to_string()];
                let mut keys = vec![
                    Key::Num(u64::from(pid)),
                    Key::Text(p.comm.clone()),
                    Key::Num(n as u64),
                ];
                rate_cells(&p.c, &mut cells, &mut keys);
                ViewRow {
                    cells,
                    keys,
                    rate: p.c.rate(),
                    total: p.c.total(),
                }
            })
            .collect();
        let conns = self
            .conns
            .iter()
            .map(|(k, c)| {
                let name = comm(k.pid);
                let proto = match k.proto {
                    6 => "tcp".to_string(),
                    17 => "udp".to_string(),
                    n => n.to_string(),
                };
                let local = endpoint(&k.laddr, k.lport);
                let remote = endpoint(&k.raddr, k.rport);
                let mut cells = vec![
                    k.pid.to_string(),
                    Shown(&name).to_string(),
                    proto.clone(),
                    local.clone(),
                    remote.clone(),
                ];
                let mut keys = vec![
                    Key::Num(u64::from(k.pid)),
                    Key::Text(name),
                    Key::Text(proto),
                    Key::Text(local),
                    Key::Text(remote),
                ];
                rate_cells(c, &mut cells, &mut keys);
                ViewRow {
                    cells,
                    keys,
                    rate: c.rate(),
                    total: c.total(),
                }
            })
            .collect();
        let remotes = self
            .remotes
            .iter()
            .map(|(a, c)| {
                let ip = addr(a).to_string();
                let (n, pids) = at_remote.get(a).cloned().unwrap_or_default();
                let mut names: Vec<String> = pids.iter().map(|&p| comm(p)).collect();
                names.sort();
                names.dedup();
                let names = names.join(",");
                let mut cells = vec![ip.clone(), n.to_string(), Shown(&names).to_string()];
                let mut keys = vec![Key::Text(ip), Key::Num(n as u64), Key::Text(names)];
                rate_cells(c, &mut cells, &mut keys);
                ViewRow {
                    cells,
                    keys,
                    rate: c.rate(),
                    total: c.total(),
                }
            })
            .collect();
        Shown3 {
            rows: [procs, conns, remotes],
        }
    }

    /// The rows of the current view as drawn: filtered, sorted, each a
    /// list of cell texts (all of them, before scrolling).
    pub fn rows(&self) -> Vec<Vec<String>> {
        self.view_rows().into_iter().map(|r| r.cells).collect()
    }

    fn view_rows(&self) -> Vec<ViewRow> {
        let Some(shown) = &self.shown else {
            return Vec::new();
        };
        let v = self.view.index();
        let needle = self.filter.to_lowercase();
        // The name columns: COMM, COMM, and a remote's address and processes.
        let named: &[usize] = match self.view {
            View::Processes | View::Connections => &[1],
            View::Remotes => &[0, 2],
        };
        let mut rows: Vec<ViewRow> = shown.rows[v]
            .iter()
            .filter(|r| {
                needle.is_empty()
                    || named.iter().any(|&i| match &r.keys[i] {
                        Key::Text(t) => t.to_lowercase().contains(&needle),
                        Key::Num(_) => false,
                    })
            })
            .cloned()
            .collect();
        let (col, rev) = self.sort[v];
        let by_traffic = |a: &ViewRow, b: &ViewRow| (b.rate, b.total).cmp(&(a.rate, a.total));
        rows.sort_by(|a, b| {
            let o = match col {
                // Numbers largest first, names A to Z.
                Some(c) => match (&a.keys[c], &b.keys[c]) {
                    (Key::Num(x), Key::Num(y)) => y.cmp(x),
                    (x, y) => x.cmp(y),
                },
                None => by_traffic(a, b),
            };
            let o = if rev { o.reverse() } else { o };
            o.then_with(|| by_traffic(a, b))
                .then_with(|| a.keys.cmp(&b.keys))
        });
        rows
    }

    /// Handle one key; says whether to quit.
    pub fn key(&mut self, k: KeyEvent) -> Action {
        if k.kind == KeyEventKind::Release {
            return Action::None;
        }
        if k.modifiers.contains(KeyModifiers::CONTROL) && k.code == KeyCode::Char('c') {
            return Action::Quit;
        }
        if let Input::Filter(text) = &mut self.input {
            match k.code {
                KeyCode::Enter => {
                    self.filter = std::mem::take(text);
                    self.input = Input::Keys;
                    self.offset = [0; 3];
                }
                KeyCode::Esc => self.input = Input::Keys,
                KeyCode::Backspace => {
                    text.pop();
                }
                KeyCode::Char(c) if !c.is_control() => text.push(c),
                _ => {}
            }
            return Action::None;
        }
        let v = self.view.index();
        let ncols = self.view.columns().len();
        match k.code {
            KeyCode::Char('q') => return Action::Quit,
            KeyCode::Tab | KeyCode::Right => {
                self.view = View::ALL[(v + 1) % View::ALL.len()];
            }
            KeyCode::BackTab | KeyCode::Left => {
                self.view = View::ALL[(v + View::ALL.len() - 1) % View::ALL.len()];
            }
            KeyCode::Char('s') | KeyCode::Char('>') => {
                self.sort[v].0 = match self.sort[v].0 {
                    None => Some(0),
                    Some(c) if c + 1 < ncols => Some(c + 1),
                    Some(_) => None,
                };
            }
            KeyCode::Char('S') | KeyCode::Char('<') => {
                self.sort[v].0 = match self.sort[v].0 {
                    None => Some(ncols - 1),
                    Some(0) => None,
                    Some(c) => Some(c - 1),
                };
            }
            KeyCode::Char(c @ '1'..='9') => {
                let c = c as usize - '1' as usize;
                if c < ncols {
                    self.sort[v].0 = Some(c);
                }
            }
            KeyCode::Char('0') => self.sort[v].0 = None,
            KeyCode::Char('r') => self.sort[v].1 = !self.sort[v].1,
            KeyCode::Char('p') | KeyCode::Char(' ') => self.paused = !self.paused,
            KeyCode::Char('/') => self.input = Input::Filter(self.filter.clone()),
            KeyCode::Esc => self.filter.clear(),
            KeyCode::Down | KeyCode::Char('j') => self.offset[v] = self.offset[v].saturating_add(1),
            KeyCode::Up | KeyCode::Char('k') => self.offset[v] = self.offset[v].saturating_sub(1),
            KeyCode::PageDown => self.offset[v] = self.offset[v].saturating_add(10),
            KeyCode::PageUp => self.offset[v] = self.offset[v].saturating_sub(10),
            KeyCode::Home => self.offset[v] = 0,
            _ => {}
        }
        Action::None
    }
}

/// `addr:port`, IPv6 in brackets.
fn endpoint(a: &[u8; 16], port: u16) -> String {
    match addr(a) {
        IpAddr::V4(v4) => format!("{v4}:{port}"),
        IpAddr::V6(v6) => format!("[{v6}]:{port}"),
    }
}

/// The keys, as the footer lists them.
pub const KEYS_HELP: &str = "q quit  Tab view  s/S sort column  1-9 column  0 traffic  r reverse  / filter  Esc unfilter  p pause  ↑↓ scroll";

/// Paint the model: a status line, the view tabs, the table, the footer.
pub fn draw(f: &mut Frame, m: &mut TopModel) {
    let [top, tabs, body, foot] = Layout::vertical([
        Constraint::Length(1),
        Constraint::Length(1),
        Constraint::Min(1),
        Constraint::Length(3),
    ])
    .areas(f.area());

    f.render_widget(
        Paragraph::new(format!("snoop top  {}", m.status))
            .style(Style::default().add_modifier(Modifier::BOLD)),
        top,
    );

    let mut spans = Vec::new();
    for v in View::ALL {
        let style = if v == m.view {
            Style::default().add_modifier(Modifier::REVERSED | Modifier::BOLD)
        } else {
            Style::default()
        };
        spans.push(Span::styled(format!(" {} ", v.title()), style));
        spans.push(Span::raw(" "));
    }
    f.render_widget(Paragraph::new(Line::from(spans)), tabs);

    draw_table(f, m, body);

    let (col, rev) = m.sort();
    let by = match col {
        Some(c) => m.view.columns()[c].to_string(),
        None => "traffic".to_string(),
    };
    let order = if rev { " (reversed)" } else { "" };
    let second = match &m.input {
        Input::Filter(t) => format!("filter by name: {}_   (Enter apply, Esc cancel)", Shown(t)),
        Input::Keys => {
            // What holds the view, first: a narrow terminal cuts the end.
            let mut l = String::new();
            if m.paused {
                l.push_str("[PAUSED]  ");
            }
            if !m.filter.is_empty() {
                let _ = write!(l, "filter: {}  ", Shown(&m.filter));
            }
            let _ = write!(l, "sort: {by}{order}");
            l
        }
    };
    // The sort (or the filter being typed) above the keys, which wrap on
    // a narrow terminal.
    f.render_widget(
        Paragraph::new(vec![
            Line::styled(second, Style::default().add_modifier(Modifier::BOLD)),
            Line::from(KEYS_HELP),
        ])
        .wrap(Wrap { trim: true }),
        foot,
    );
}

fn draw_table(f: &mut Frame, m: &mut TopModel, area: Rect) {
    let rows = m.view_rows();
    let v = m.view.index();
    let visible = usize::from(area.height.saturating_sub(1));
    m.offset[v] = m.offset[v].min(rows.len().saturating_sub(visible.max(1)));
    let (col, rev) = m.sort[v];
    let header = Row::new(m.view.columns().iter().enumerate().map(|(i, h)| {
        let mark = match (col == Some(i), rev) {
            (false, _) => "",
            (true, false) => "▼",
            (true, true) => "▲",
        };
        Cell::from(format!("{h}{mark}"))
    }))
    .style(Style::default().add_modifier(Modifier::BOLD | Modifier::UNDERLINED));
    let shown: Vec<ViewRow> = rows.into_iter().skip(m.offset[v]).take(visible).collect();
    // Each column as wide as its widest cell (header and its sort mark
    // included), at least its minimum; what is left stays on the right.
    let widths: Vec<Constraint> = m
        .view
        .columns()
        .iter()
        .zip(m.view.min_widths())
        .enumerate()
        .map(|(i, (h, &min))| {
            let w = shown
                .iter()
                .filter_map(|r| r.cells.get(i))
                .map(|c| Line::from(c.as_str()).width())
                .fold(Line::from(*h).width() + 1, usize::max);
            Constraint::Length(u16::try_from(w).unwrap_or(u16::MAX).max(min))
        })
        .collect();
    let body = shown.into_iter().map(|r| Row::new(r.cells));
    f.render_widget(
        Table::new(body, widths)
            .header(header)
            .column_spacing(1)
            .flex(Flex::Start),
        area,
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use ratatui::backend::TestBackend;
    use ratatui::Terminal;
    use snoop_format::{addr_bytes, comm_bytes, AF_INET};

    const S: u64 = 1_000_000_000;

    fn flow(pid: u32, comm: &str, remote: &str, rport: u16) -> Flow {
        Flow {
            pid,
            tid: pid,
            comm: comm_bytes(comm),
            family: AF_INET,
            proto: 6,
            laddr: addr_bytes("10.0.0.1".parse().unwrap()),
            lport: 40000 + (pid as u16),
            raddr: addr_bytes(remote.parse().unwrap()),
            rport,
            ..Flow::default()
        }
    }

    fn key(c: KeyCode) -> KeyEvent {
        KeyEvent::new(c, KeyModifiers::NONE)
    }

    fn type_keys(m: &mut TopModel, s: &str) {
        for c in s.chars() {
            assert_eq!(m.key(key(KeyCode::Char(c))), Action::None);
        }
    }

    /// The screen as lines of text.
    fn screen(m: &mut TopModel) -> Vec<String> {
        let mut t = Terminal::new(TestBackend::new(140, 20)).expect("terminal");
        t.draw(|f| draw(f, m)).expect("draw");
        let buf = t.backend().buffer();
        (0..buf.area.height)
            .map(|y| {
                (0..buf.area.width)
                    .map(|x| buf[(x, y)].symbol())
                    .collect::<String>()
                    .trim_end()
                    .to_string()
            })
            .collect()
    }

    /// The table lines below the header, split into cells where the
    /// header's column names start.
    fn table(m: &mut TopModel) -> Vec<Vec<String>> {
        let s = screen(m);
        let cols = m.view.columns();
        let head = s
            .iter()
            .position(|l| l.trim_start().starts_with(cols[0]))
            .expect("header");
        let h: Vec<char> = s[head].chars().collect();
        let starts: Vec<usize> = cols
            .iter()
            .map(|c| {
                let c: Vec<char> = c.chars().collect();
                h.windows(c.len())
                    .position(|w| w == c.as_slice())
                    .expect("column in header")
            })
            .collect();
        s[head + 1..]
            .iter()
            .take_while(|l| {
                !["sort: ", "filter", "[PAUSED]"]
                    .iter()
                    .any(|p| l.starts_with(p))
            })
            .filter(|l| !l.is_empty())
            .map(|l| {
                let l: Vec<char> = l.chars().collect();
                (0..starts.len())
                    .map(|i| {
                        let a = starts[i].min(l.len());
                        let b = starts.get(i + 1).copied().unwrap_or(l.len()).min(l.len());
                        l[a..b].iter().collect::<String>().trim().to_string()
                    })
                    .collect()
            })
            .collect()
    }

    /// alpha (pid 10) talks to 192.0.2.1:443 on two connections; beta
    /// (pid 20) receives from 198.51.100.7:53; gamma (pid 30) is quiet in
    /// the second interval.
    fn fed() -> TopModel {
        let mut m = TopModel::default();
        let a1 = flow(10, "alpha", "192.0.2.1", 443);
        let a2 = Flow { lport: 50000, ..a1 };
        let b = flow(20, "beta", "198.51.100.7", 53);
        let g = flow(30, "gamma", "203.0.113.9", 80);
        m.add(&g, 999_999, Direction::Tx);
        m.tick(S);
        m.add(&a1, 1000, Direction::Tx);
        m.add(&a2, 250, Direction::Tx);
        m.add(&a1, 500, Direction::Rx);
        m.add(&b, 125_000, Direction::Rx);
        m.tick(S);
        m
    }

    #[test]
    fn rates_are_bits_per_second_of_the_last_interval() {
        assert_eq!(bits_per_second(125, S), 1000);
        assert_eq!(bits_per_second(1000, 2 * S), 4000);
        assert_eq!(bits_per_second(1, 0), 0);
        assert_eq!(bits_per_second(u64::MAX, 1), u64::MAX);
        assert_eq!(human_rate(840), "840 bit/s");
        assert_eq!(human_rate(1000), "1.0 kbit/s");
        assert_eq!(human_rate(1_500_000), "1.5 Mbit/s");
        assert_eq!(human_rate(999_999), "1.0 Mbit/s");

        let mut m = fed();
        let rows = table(&mut m);
        // Sorted by traffic: beta's 125000 B in 1 s is 1.0 Mbit/s.
        assert_eq!(
            rows[0],
            [
                "20",
                "beta",
                "1",
                "1.0 Mbit/s",
                "0 bit/s",
                "122.1 KiB",
                "0 B"
            ]
        );
        // alpha: 500 B received, 1250 B sent on two connections.
        assert_eq!(
            rows[1],
            [
                "10",
                "alpha",
                "2",
                "4.0 kbit/s",
                "10.0 kbit/s",
                "500 B",
                "1.2 KiB"
            ]
        );
        // gamma sent nothing in this interval; its total stays.
        assert_eq!(
            rows[2],
            ["30", "gamma", "1", "0 bit/s", "0 bit/s", "0 B", "976.6 KiB"]
        );
        // A two-second interval halves the rate.
        m.add(
            &flow(20, "beta", "198.51.100.7", 53),
            125_000,
            Direction::Rx,
        );
        m.tick(2 * S);
        assert_eq!(table(&mut m)[0][3], "500.0 kbit/s");
        assert_eq!(table(&mut m)[0][5], "244.1 KiB");
    }

    #[test]
    fn sorts_by_column_and_reverses() {
        let mut m = fed();
        let pids = |m: &mut TopModel| table(m).iter().map(|r| r[0].clone()).collect::<Vec<_>>();
        assert_eq!(pids(&mut m), ["20", "10", "30"], "by traffic");
        type_keys(&mut m, "s");
        assert_eq!(m.sort(), (Some(0), false));
        assert_eq!(pids(&mut m), ["30", "20", "10"], "PID, largest first");
        type_keys(&mut m, "r");
        assert_eq!(pids(&mut m), ["10", "20", "30"], "PID reversed");
        assert!(screen(&mut m).iter().any(|l| l.contains("PID▲")));
        type_keys(&mut m, "2r");
        assert_eq!(pids(&mut m), ["10", "20", "30"], "COMM A to Z");
        assert!(screen(&mut m).iter().any(|l| l.contains("sort: COMM")));
        type_keys(&mut m, "7");
        assert_eq!(pids(&mut m), ["30", "10", "20"], "TX TOTAL");
        m.key(key(KeyCode::Char('S')));
        assert_eq!(pids(&mut m), ["20", "10", "30"], "RX TOTAL");
        type_keys(&mut m, "0");
        assert_eq!(m.sort(), (None, false));
        assert!(screen(&mut m).iter().any(|l| l.contains("sort: traffic")));
        assert!(screen(&mut m).iter().any(|l| l.starts_with(KEYS_HELP)));
    }

    #[test]
    fn filters_by_name() {
        let mut m = fed();
        type_keys(&mut m, "/AL");
        assert!(screen(&mut m)
            .iter()
            .any(|l| l.contains("filter by name: AL_")));
        assert_eq!(table(&mut m).len(), 3, "not applied while typing");
        m.key(key(KeyCode::Enter));
        let rows = table(&mut m);
        assert_eq!(rows.len(), 1, "{rows:?}");
        assert_eq!(rows[0][1], "alpha");
        assert!(screen(&mut m)
            .iter()
            .any(|l| l.starts_with("filter: AL  sort: traffic")));
        // The filter holds in the other views: alpha's connections, and the
        // remotes it talked to.
        m.key(key(KeyCode::Tab));
        let rows = table(&mut m);
        assert_eq!(rows.len(), 2, "{rows:?}");
        assert!(rows.iter().all(|r| r[1] == "alpha"));
        m.key(key(KeyCode::Tab));
        let rows = table(&mut m);
        assert_eq!(rows.len(), 1, "{rows:?}");
        assert_eq!(rows[0][0], "192.0.2.1");
        // Esc clears it.
        m.key(key(KeyCode::Esc));
        assert_eq!(table(&mut m).len(), 3);
        // Editing: Backspace, and Esc while typing leaves the filter as it was.
        type_keys(&mut m, "/betx");
        m.key(key(KeyCode::Backspace));
        m.key(key(KeyCode::Enter));
        assert_eq!(m.filter(), "bet");
        type_keys(&mut m, "/zzz");
        m.key(key(KeyCode::Esc));
        assert_eq!(m.filter(), "bet");
        assert_eq!(m.key(key(KeyCode::Char('q'))), Action::Quit);
    }

    #[test]
    fn tab_switches_views() {
        let mut m = fed();
        assert_eq!(m.view(), View::Processes);
        m.key(key(KeyCode::Tab));
        assert_eq!(m.view(), View::Connections);
        let rows = table(&mut m);
        assert_eq!(rows.len(), 4, "{rows:?}");
        assert_eq!(
            rows[0],
            [
                "20",
                "beta",
                "tcp",
                "10.0.0.1:40020",
                "198.51.100.7:53",
                "1.0 Mbit/s",
                "0 bit/s",
                "122.1 KiB",
                "0 B"
            ]
        );
        assert!(rows
            .iter()
            .any(|r| r[3] == "10.0.0.1:50000" && r[6] == "2.0 kbit/s"));
        m.key(key(KeyCode::Tab));
        assert_eq!(m.view(), View::Remotes);
        let rows = table(&mut m);
        assert_eq!(rows.len(), 3);
        assert_eq!(
            rows[1],
            [
                "192.0.2.1",
                "2",
                "alpha",
                "4.0 kbit/s",
                "10.0 kbit/s",
                "500 B",
                "1.2 KiB"
            ]
        );
        m.key(key(KeyCode::Tab));
        assert_eq!(m.view(), View::Processes);
        m.key(key(KeyCode::BackTab));
        assert_eq!(m.view(), View::Remotes);
        // Each view keeps its own sort.
        type_keys(&mut m, "1");
        m.key(key(KeyCode::Tab));
        assert_eq!(m.sort(), (None, false));
    }

    #[test]
    fn pause_freezes_the_view_and_keeps_the_time() {
        let mut m = fed();
        type_keys(&mut m, "p");
        assert!(m.paused());
        assert!(screen(&mut m)
            .iter()
            .any(|l| l.starts_with("[PAUSED]  sort: traffic")));
        let b = flow(20, "beta", "198.51.100.7", 53);
        m.add(&b, 250_000, Direction::Rx);
        m.tick(S);
        m.add(&b, 250_000, Direction::Rx);
        m.tick(S);
        assert_eq!(table(&mut m)[0][5], "122.1 KiB", "frozen");
        type_keys(&mut m, " ");
        assert!(!m.paused());
        m.tick(0);
        // 500000 B over the two paused seconds: 2 Mbit/s.
        let r = &table(&mut m)[0];
        assert_eq!((r[3].as_str(), r[5].as_str()), ("2.0 Mbit/s", "610.4 KiB"));
    }

    #[test]
    fn quiet_rows_leave_after_idle_ticks() {
        let mut m = fed();
        let b = flow(20, "beta", "198.51.100.7", 53);
        // gamma was quiet for one tick already, beta and alpha for none.
        for _ in 0..IDLE_TICKS - 1 {
            m.add(&b, 1, Direction::Rx);
            m.tick(S);
        }
        assert_eq!(table(&mut m).len(), 3, "gamma: {IDLE_TICKS} quiet ticks");
        m.add(&b, 1, Direction::Rx);
        m.tick(S);
        let rows = table(&mut m);
        assert_eq!(rows.len(), 2, "{rows:?}");
        assert!(rows.iter().all(|r| r[1] != "gamma"), "{rows:?}");
        m.key(key(KeyCode::Tab));
        assert!(table(&mut m).iter().all(|r| r[1] != "gamma"));
        m.key(key(KeyCode::Tab));
        assert!(table(&mut m).iter().all(|r| r[0] != "203.0.113.9"));
        // Traffic again brings a row back, with its totals from then on.
        m.add(&flow(30, "gamma", "203.0.113.9", 80), 7, Direction::Tx);
        m.tick(S);
        let g = table(&mut m).into_iter().find(|r| r[0] == "203.0.113.9");
        assert_eq!(g.map(|r| r[6].clone()).as_deref(), Some("7 B"));
    }

    #[test]
    fn scrolls_within_the_rows() {
        let mut m = TopModel::default();
        for pid in 1..=40 {
            m.add(
                &flow(pid, "many", "192.0.2.1", 1),
                u64::from(pid),
                Direction::Tx,
            );
        }
        m.tick(S);
        type_keys(&mut m, "1r");
        assert_eq!(table(&mut m)[0][0], "1");
        m.key(key(KeyCode::Down));
        assert_eq!(table(&mut m)[0][0], "2");
        m.key(key(KeyCode::PageDown));
        m.key(key(KeyCode::PageDown));
        m.key(key(KeyCode::PageDown));
        m.key(key(KeyCode::PageDown));
        // Never past the last screenful: 20 lines, 15 rows shown.
        let rows = table(&mut m);
        assert_eq!(rows.last().map(|r| r[0].as_str()), Some("40"));
        m.key(key(KeyCode::Home));
        assert_eq!(table(&mut m)[0][0], "1");
    }
}
