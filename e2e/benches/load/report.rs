//! The summary table: one row per figure, Portcullis beside its comparison,
//! the ratio, the goal, and whether it is met (or missed by how much).

/// A goal on one number.
#[derive(Debug, Clone, Copy)]
pub enum Goal {
    /// value ≥ goal.
    AtLeast(f64),
    /// value ≤ goal.
    AtMost(f64),
    /// value < goal.
    Below(f64),
}

impl Goal {
    /// "met (…)" or "missed by N % (…)".
    pub fn verdict(self, value: f64, fmt: impl Fn(f64) -> String) -> String {
        let (met, by, op) = match self {
            Self::AtLeast(goal) => (value >= goal, (goal - value) / goal, "≥"),
            Self::AtMost(goal) => (value <= goal, (value - goal) / goal, "≤"),
            Self::Below(goal) => (value < goal, (value - goal) / goal, "<"),
        };
        let goal = match self {
            Self::AtLeast(g) | Self::AtMost(g) | Self::Below(g) => g,
        };
        if !value.is_finite() {
            return "no figure".into();
        }
        if met {
            format!("met ({} {op} {})", fmt(value), fmt(goal))
        } else {
            format!(
                "**missed** by {:.0}% ({} vs {op} {})",
                (by * 100.0).max(0.5),
                fmt(value),
                fmt(goal)
            )
        }
    }
}

/// One row of the table.
#[derive(Debug, Clone)]
pub struct Row {
    pub what: String,
    pub portcullis: String,
    pub compared: String,
    pub ratio: String,
    pub goal: String,
    pub verdict: String,
}

impl Row {
    pub fn new(what: impl Into<String>) -> Self {
        Self {
            what: what.into(),
            portcullis: String::new(),
            compared: String::new(),
            ratio: "-".into(),
            goal: String::new(),
            verdict: String::new(),
        }
    }
}

pub fn print(rows: &[Row]) {
    println!("| what | Portcullis | compared with | ratio | goal | verdict |");
    println!("| --- | --- | --- | --- | --- | --- |");
    for r in rows {
        println!(
            "| {} | {} | {} | {} | {} | {} |",
            cell(&r.what),
            cell(&r.portcullis),
            cell(&r.compared),
            cell(&r.ratio),
            cell(&r.goal),
            cell(&r.verdict)
        );
    }
}

fn cell(s: &str) -> String {
    s.replace('|', "\\|")
}

pub fn x(v: f64) -> String {
    format!("{v:.2}×")
}
