//! `flotilla-monitor ROOT ID`: the per-container monitor (see `runtime::container::monitor`);
//! `flotilla-monitor --exec ROOT ID`: runs the command in `$FLOTILLA_EXEC` inside a running
//! container (see `runtime::container::exec`). Started by the runtime library, not by users.

use std::path::Path;
use std::process::ExitCode;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    let code = match args.as_slice() {
        [_, flag, root, id] if flag == "--exec" => runtime::container::exec::exec_main(Path::new(root), id),
        [_, root, id] => runtime::container::monitor::monitor_main(Path::new(root), id),
        _ => {
            eprintln!("usage: flotilla-monitor ROOT ID | flotilla-monitor --exec ROOT ID (started by ctl and the node agent)");
            2
        }
    };
    ExitCode::from(u8::try_from(code).unwrap_or(255))
}
