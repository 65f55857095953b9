//! Plain tables for terminals and logs: a header line, columns aligned, no borders.

use comfy_table::Table;

/// `rows` under `header`, columns separated by two spaces, no trailing blanks.
pub fn table<const N: usize>(
    header: [&str; N],
    rows: impl IntoIterator<Item = [String; N]>,
) -> String {
    let mut table = Table::new();
    table.load_preset(comfy_table::presets::NOTHING);
    table.set_header(header);
    for row in rows {
        table.add_row(row);
    }
    let text = table.to_string();
    let lines: Vec<&str> = text
        .lines()
        .map(|l| l.strip_prefix(' ').unwrap_or(l).trim_end())
        .collect();
    lines.join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_line_up_without_trailing_blanks() {
        let t = table(
            ["device", "mode"],
            [
                ["sim:a".to_string(), "app".to_string()],
                ["sim:longer".to_string(), String::new()],
            ],
        );
        assert_eq!(t, "device      mode\nsim:a       app\nsim:longer");
    }
}
