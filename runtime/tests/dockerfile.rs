//! Table tests of the Dockerfile parser and the `.dockerignore` matcher against Docker's
//! documented semantics: good and bad input side by side.

use std::collections::BTreeMap;
use std::time::Duration;

use runtime::build::dockerfile::{
    parse, Arg, Command, CopyArgs, Dockerfile, Healthcheck, Heredoc, Instruction, Port, Source,
};
use runtime::build::dockerignore::DockerIgnore;

fn args(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn parse_with(text: &str, build_args: &[(&str, &str)]) -> Dockerfile {
    match parse(text, "Dockerfile", &args(build_args)) {
        Ok(d) => d,
        Err(e) => panic!("{text:?} did not parse: {e}"),
    }
}

/// The instructions of the last stage of `FROM scratch\n` + `body`.
fn instructions(body: &str) -> Vec<Instruction> {
    let d = parse_with(&format!("FROM scratch\n{body}"), &[]);
    d.stages
        .last()
        .map(|s| s.instructions.iter().map(|i| i.node.clone()).collect())
        .unwrap_or_default()
}

fn one(body: &str) -> Instruction {
    let mut all = instructions(body);
    assert_eq!(all.len(), 1, "{body:?} gave {all:?}");
    all.remove(0)
}

fn error(text: &str) -> String {
    match parse(text, "Dockerfile", &BTreeMap::new()) {
        Ok(d) => panic!("{text:?} parsed but should not have: {d:?}"),
        Err(e) => e.to_string(),
    }
}

fn s(v: &str) -> String {
    v.to_owned()
}

fn sv(v: &[&str]) -> Vec<String> {
    v.iter().map(|x| x.to_string()).collect()
}

fn pairs(v: &[(&str, &str)]) -> Vec<(String, String)> {
    v.iter()
        .map(|(k, x)| (k.to_string(), x.to_string()))
        .collect()
}

fn path_sources(c: &CopyArgs) -> Vec<String> {
    c.sources
        .iter()
        .map(|s| match s {
            Source::Path(p) => p.clone(),
            Source::Heredoc(h) => format!("<<{}", h.name),
        })
        .collect()
}

#[test]
fn commands_in_exec_and_shell_form() {
    let run = |cmd: Command| Instruction::Run {
        command: cmd,
        heredocs: vec![],
        mounts: vec![],
        network: None,
        security: None,
    };
    let cases: Vec<(&str, Instruction)> = vec![
        (
            r#"RUN ["echo", "hi"]"#,
            run(Command::Exec(sv(&["echo", "hi"]))),
        ),
        ("RUN echo $HOME", run(Command::Shell(s("echo $HOME")))),
        // Invalid JSON falls back to shell form, as Docker does.
        ("RUN [echo, hi]", run(Command::Shell(s("[echo, hi]")))),
        (
            r#"RUN ["echo", 1]"#,
            run(Command::Shell(s(r#"["echo", 1]"#))),
        ),
        (
            r#"CMD ["nginx", "-g", "daemon off;"]"#,
            Instruction::Cmd(Command::Exec(sv(&["nginx", "-g", "daemon off;"]))),
        ),
        (
            "CMD nginx -g 'daemon off;'",
            Instruction::Cmd(Command::Shell(s("nginx -g 'daemon off;'"))),
        ),
        ("cmd --help", Instruction::Cmd(Command::Shell(s("--help")))),
        (
            r#"ENTRYPOINT ["/bin/app"]"#,
            Instruction::Entrypoint(Command::Exec(sv(&["/bin/app"]))),
        ),
        (
            "ENTRYPOINT exec /bin/app",
            Instruction::Entrypoint(Command::Shell(s("exec /bin/app"))),
        ),
        (
            "ENTRYPOINT []",
            Instruction::Entrypoint(Command::Exec(vec![])),
        ),
        (
            r#"SHELL ["/bin/bash", "-c"]"#,
            Instruction::Shell(sv(&["/bin/bash", "-c"])),
        ),
    ];
    for (body, expected) in cases {
        assert_eq!(one(body), expected, "{body}");
    }
    match one("RUN --mount=type=cache,target=/root/.cache --network=none go build") {
        Instruction::Run {
            command,
            mounts,
            network,
            ..
        } => {
            assert_eq!(command, Command::Shell(s("go build")));
            assert_eq!(mounts, sv(&["type=cache,target=/root/.cache"]));
            assert_eq!(network.as_deref(), Some("none"));
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn shell_form_commands_are_not_expanded() {
    let all = instructions("ENV A=1\nRUN echo $A\nCMD echo ${A}");
    assert_eq!(
        all[1],
        Instruction::Run {
            command: Command::Shell(s("echo $A")),
            heredocs: vec![],
            mounts: vec![],
            network: None,
            security: None
        }
    );
    assert_eq!(all[2], Instruction::Cmd(Command::Shell(s("echo ${A}"))));
}

#[test]
fn env_and_label_both_forms() {
    let cases: Vec<(&str, Vec<(String, String)>)> = vec![
        ("ENV K V", pairs(&[("K", "V")])),
        ("ENV K a b  c", pairs(&[("K", "a b  c")])),
        (
            r#"ENV K=V K2="a b" K3=a\ b K4='$K'"#,
            pairs(&[("K", "V"), ("K2", "a b"), ("K3", "a b"), ("K4", "$K")]),
        ),
        ("ENV EMPTY=", pairs(&[("EMPTY", "")])),
        (
            r#"ENV K="quoted \"inner\"""#,
            pairs(&[("K", "quoted \"inner\"")]),
        ),
    ];
    for (body, expected) in cases {
        assert_eq!(one(body), Instruction::Env(expected), "{body}");
    }
    assert_eq!(
        one(r#"LABEL version="1.0" "com.example.vendor"="ACME Inc" multi=a\ b"#),
        Instruction::Label(pairs(&[
            ("version", "1.0"),
            ("com.example.vendor", "ACME Inc"),
            ("multi", "a b")
        ]))
    );
    assert_eq!(
        one("LABEL description This text"),
        Instruction::Label(pairs(&[("description", "This text")]))
    );
    assert_eq!(
        one("MAINTAINER Jane <jane@example.com>"),
        Instruction::Maintainer(s("Jane <jane@example.com>"))
    );
}

#[test]
fn env_applies_in_order_to_later_instructions() {
    let all = instructions(
        "ENV DIR=/app USER=me\nWORKDIR $DIR/src\nENV DIR=${DIR}/v2 PREV=$DIR\nUSER ${USER}:staff\nCOPY a ${DIR}/\nLABEL dir=$DIR",
    );
    assert_eq!(all[1], Instruction::Workdir(s("/app/src")));
    // Within one ENV line the values see the environment before the line.
    assert_eq!(
        all[2],
        Instruction::Env(pairs(&[("DIR", "/app/v2"), ("PREV", "/app")]))
    );
    assert_eq!(all[3], Instruction::User(s("me:staff")));
    match &all[4] {
        Instruction::Copy(c) => assert_eq!(c.dest, "/app/v2/"),
        other => panic!("{other:?}"),
    }
    assert_eq!(all[5], Instruction::Label(pairs(&[("dir", "/app/v2")])));
}

#[test]
fn substitution_forms() {
    let base = "ENV SET=value EMPTY=\n";
    let cases = [
        ("$SET", "value"),
        ("${SET}", "value"),
        ("${SET}x", "valuex"),
        ("${UNSET}", ""),
        ("$UNSET", ""),
        ("${UNSET:-word}", "word"),
        ("${EMPTY:-word}", "word"),
        ("${SET:-word}", "value"),
        ("${UNSET-word}", "word"),
        ("${EMPTY-word}", ""),
        ("${SET:+word}", "word"),
        ("${EMPTY:+word}", ""),
        ("${UNSET:+word}", ""),
        ("${EMPTY+word}", "word"),
        ("${UNSET+word}", ""),
        ("${UNSET:-$SET}", "value"),
        ("${UNSET:-${SET:+nested}}", "nested"),
        ("\\$SET", "$SET"),
        ("\\${SET}", "${SET}"),
        ("'$SET'", "$SET"),
        ("\"$SET\"", "value"),
        ("a$", "a$"),
    ];
    for (word, expected) in cases {
        let all = instructions(&format!("{base}WORKDIR /{word}"));
        assert_eq!(
            all[1],
            Instruction::Workdir(format!("/{expected}")),
            "{word}"
        );
    }
}

#[test]
fn every_expanding_instruction_expands() {
    let all = instructions(
        "ARG P=8080\nARG SIG=SIGTERM\nARG V=/data\nEXPOSE $P/tcp 53/udp\nSTOPSIGNAL $SIG\nVOLUME $V /logs\nVOLUME [\"$V/json\"]\nADD --chown=$P src/*.go /dst/",
    );
    assert_eq!(
        all[3],
        Instruction::Expose(vec![
            Port {
                start: 8080,
                end: 8080,
                protocol: s("tcp")
            },
            Port {
                start: 53,
                end: 53,
                protocol: s("udp")
            }
        ])
    );
    assert_eq!(all[4], Instruction::StopSignal(s("SIGTERM")));
    assert_eq!(all[5], Instruction::Volume(sv(&["/data", "/logs"])));
    assert_eq!(all[6], Instruction::Volume(sv(&["/data/json"])));
    match &all[7] {
        Instruction::Add(c) => {
            assert_eq!(c.chown.as_deref(), Some("8080"));
            assert_eq!(path_sources(c), sv(&["src/*.go"]));
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(
        instructions("ENV PORTS=\"80 443/udp\"\nEXPOSE $PORTS")[1],
        Instruction::Expose(vec![
            Port {
                start: 80,
                end: 80,
                protocol: s("tcp")
            },
            Port {
                start: 443,
                end: 443,
                protocol: s("udp")
            }
        ])
    );
    assert_eq!(
        one("EXPOSE 8000-8010 80/TCP"),
        Instruction::Expose(vec![
            Port {
                start: 8000,
                end: 8010,
                protocol: s("tcp")
            },
            Port {
                start: 80,
                end: 80,
                protocol: s("tcp")
            }
        ])
    );
}

#[test]
fn copy_and_add_flags_and_forms() {
    let c = match one(
        "COPY --from=Build --chown=1000:1000 --chmod=0755 --link app*.txt [a-c].md /dst/",
    ) {
        Instruction::Copy(c) => c,
        other => panic!("{other:?}"),
    };
    assert_eq!(c.from.as_deref(), Some("Build"));
    assert_eq!(c.chown.as_deref(), Some("1000:1000"));
    assert_eq!(c.chmod.as_deref(), Some("0755"));
    assert!(c.link);
    assert_eq!(path_sources(&c), sv(&["app*.txt", "[a-c].md"]));
    assert_eq!(c.dest, "/dst/");

    let c = match one(r#"COPY ["with space.txt", "/d st/"]"#) {
        Instruction::Copy(c) => c,
        other => panic!("{other:?}"),
    };
    assert_eq!(path_sources(&c), sv(&["with space.txt"]));
    assert_eq!(c.dest, "/d st/");

    let a = match one("ADD --link=false --checksum=sha256:abc https://example.com/a.tgz /") {
        Instruction::Add(a) => a,
        other => panic!("{other:?}"),
    };
    assert!(!a.link);
    assert_eq!(a.checksum.as_deref(), Some("sha256:abc"));
    assert_eq!(path_sources(&a), sv(&["https://example.com/a.tgz"]));
}

#[test]
fn workdir_user_healthcheck_onbuild() {
    assert_eq!(one("WORKDIR /a b"), Instruction::Workdir(s("/a b")));
    assert_eq!(one("USER 1000:1000"), Instruction::User(s("1000:1000")));
    assert_eq!(one("HEALTHCHECK NONE"), Instruction::Healthcheck(None));
    assert_eq!(one("healthcheck none"), Instruction::Healthcheck(None));
    assert_eq!(
        one("HEALTHCHECK --interval=5m --timeout=3s --start-period=1m30s --start-interval=500ms --retries=3 CMD curl -f http://localhost/ || exit 1"),
        Instruction::Healthcheck(Some(Healthcheck {
            interval: Some(Duration::from_secs(300)),
            timeout: Some(Duration::from_secs(3)),
            start_period: Some(Duration::from_secs(90)),
            start_interval: Some(Duration::from_millis(500)),
            retries: Some(3),
            command: Command::Shell(s("curl -f http://localhost/ || exit 1")),
        }))
    );
    assert_eq!(
        one(r#"HEALTHCHECK CMD ["/bin/check", "--fast"]"#),
        Instruction::Healthcheck(Some(Healthcheck {
            interval: None,
            timeout: None,
            start_period: None,
            start_interval: None,
            retries: None,
            command: Command::Exec(sv(&["/bin/check", "--fast"])),
        }))
    );
    // ONBUILD triggers are kept unexpanded: they expand in the child build.
    let all = instructions("ENV X=1\nONBUILD COPY . /app/$X\nonbuild run make");
    match &all[1] {
        Instruction::Onbuild(inner) => match inner.as_ref() {
            Instruction::Copy(c) => assert_eq!(c.dest, "/app/$X"),
            other => panic!("{other:?}"),
        },
        other => panic!("{other:?}"),
    }
    assert!(
        matches!(&all[2], Instruction::Onbuild(inner) if matches!(inner.as_ref(), Instruction::Run { .. }))
    );
}

#[test]
fn continuations_comments_and_escape_directive() {
    let d = parse_with(
        "# syntax=docker/dockerfile:1\n# check=skip=all\n\nFROM scratch\nRUN echo a \\\n  # dropped comment\n\n    && echo b\nCOPY a \\\n b /c/\n",
        &[],
    );
    assert_eq!(d.directives.syntax.as_deref(), Some("docker/dockerfile:1"));
    assert_eq!(d.directives.check.as_deref(), Some("skip=all"));
    assert_eq!(d.directives.escape, '\\');
    let stage = &d.stages[0];
    assert_eq!(stage.instructions[0].line, 5);
    assert_eq!(
        stage.instructions[0].node,
        Instruction::Run {
            command: Command::Shell(s("echo a     && echo b")),
            heredocs: vec![],
            mounts: vec![],
            network: None,
            security: None
        }
    );
    assert_eq!(stage.instructions[1].line, 9);
    assert!(stage.instructions[0].original.contains("# dropped comment"));

    let d = parse_with("# escape=`\nFROM mcr.microsoft.com/windows\nCOPY testfile.txt c:\\ `\n  d:\\\nWORKDIR c:\\\\windows\nENV A=`$x\n", &[]);
    assert_eq!(d.directives.escape, '`');
    let all: Vec<_> = d.stages[0]
        .instructions
        .iter()
        .map(|i| i.node.clone())
        .collect();
    match &all[0] {
        Instruction::Copy(c) => {
            assert_eq!(path_sources(c), sv(&["testfile.txt", "c:\\"]));
            assert_eq!(c.dest, "d:\\");
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(all[1], Instruction::Workdir(s("c:\\\\windows")));
    assert_eq!(all[2], Instruction::Env(pairs(&[("A", "$x")])));

    // A directive after a comment is an ordinary comment.
    let d = parse_with("# a comment\n# escape=`\nFROM scratch\n", &[]);
    assert_eq!(d.directives.escape, '\\');
    // Keywords are case-insensitive.
    assert_eq!(
        parse_with("from scratch\nworkdir /x", &[]).stages[0]
            .instructions
            .len(),
        1
    );
}

#[test]
fn heredocs() {
    let d = parse_with(
        "FROM scratch\nRUN <<EOF\napt-get update\napt-get install -y vim\nEOF\nRUN <<-EOT bash\n\t\techo tabs\n\tEOT\nCOPY <<\"CONF\" <<EOF2 /etc/\nname=$NAME\nCONF\nv=$V\nEOF2\nRUN cat <<'A' > /a && cat <<B > /b\n$lit\nA\n$exp\nB\nENV X=after\n",
        &[],
    );
    let all: Vec<_> = d.stages[0]
        .instructions
        .iter()
        .map(|i| i.node.clone())
        .collect();
    assert_eq!(all.len(), 5);
    match &all[0] {
        Instruction::Run {
            command, heredocs, ..
        } => {
            assert_eq!(command, &Command::Shell(s("<<EOF")));
            assert_eq!(
                heredocs,
                &vec![Heredoc {
                    name: s("EOF"),
                    content: s("apt-get update\napt-get install -y vim\n"),
                    expand: true,
                    strip_tabs: false
                }]
            );
        }
        other => panic!("{other:?}"),
    }
    match &all[1] {
        Instruction::Run { heredocs, .. } => {
            assert_eq!(
                heredocs,
                &vec![Heredoc {
                    name: s("EOT"),
                    content: s("echo tabs\n"),
                    expand: true,
                    strip_tabs: true
                }]
            );
        }
        other => panic!("{other:?}"),
    }
    match &all[2] {
        Instruction::Copy(c) => {
            assert_eq!(c.dest, "/etc/");
            assert_eq!(c.sources.len(), 2);
            match (&c.sources[0], &c.sources[1]) {
                (Source::Heredoc(a), Source::Heredoc(b)) => {
                    assert_eq!(
                        (a.name.as_str(), a.content.as_str(), a.expand),
                        ("CONF", "name=$NAME\n", false)
                    );
                    // Unset variables expand to nothing in an expanding COPY heredoc.
                    assert_eq!(
                        (b.name.as_str(), b.content.as_str(), b.expand),
                        ("EOF2", "v=\n", true)
                    );
                }
                other => panic!("{other:?}"),
            }
        }
        other => panic!("{other:?}"),
    }
    match &all[3] {
        Instruction::Run { heredocs, .. } => {
            assert_eq!(heredocs.len(), 2);
            assert_eq!(
                (
                    heredocs[0].name.as_str(),
                    heredocs[0].content.as_str(),
                    heredocs[0].expand
                ),
                ("A", "$lit\n", false)
            );
            // RUN heredocs are left for the shell to expand.
            assert_eq!(
                (
                    heredocs[1].name.as_str(),
                    heredocs[1].content.as_str(),
                    heredocs[1].expand
                ),
                ("B", "$exp\n", true)
            );
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(d.stages[0].instructions[4].line, 19);
    let copy = parse_with(
        "FROM scratch\nENV N=x\nCOPY <<EOF /f\nn=$N \\$N\nEOF\n",
        &[],
    );
    match &copy.stages[0].instructions[1].node {
        Instruction::Copy(c) => match &c.sources[0] {
            Source::Heredoc(h) => assert_eq!(h.content, "n=x $N\n"),
            other => panic!("{other:?}"),
        },
        other => panic!("{other:?}"),
    }
}

#[test]
fn arg_scoping() {
    let text = "ARG VERSION=3.19\nARG REG\nFROM ${REG:-docker.io}/alpine:$VERSION AS base\nRUN true\nARG VERSION\nARG OTHER=o\nENV V=$VERSION O=$OTHER R=$REG\nFROM base\nENV V2=${VERSION:-none} T=$TARGETARCH\nARG TARGETARCH\nENV T2=$TARGETARCH\n";
    let d = parse_with(text, &[]);
    assert_eq!(
        d.global_args,
        vec![
            Arg {
                name: s("VERSION"),
                default: Some(s("3.19")),
                value: Some(s("3.19"))
            },
            Arg {
                name: s("REG"),
                default: None,
                value: None
            },
        ]
    );
    assert_eq!(d.stages[0].base, "docker.io/alpine:3.19");
    assert_eq!(d.stages[0].name.as_deref(), Some("base"));
    let env = |stage: usize, idx: usize| d.stages[stage].instructions[idx].node.clone();
    // Global ARGs are not visible in a stage until re-declared; REG was never declared there.
    assert_eq!(
        env(0, 3),
        Instruction::Env(pairs(&[("V", "3.19"), ("O", "o"), ("R", "")]))
    );
    // A stage built on another inherits its ENV but not its ARGs.
    assert_eq!(
        env(1, 0),
        Instruction::Env(pairs(&[("V2", "none"), ("T", "")]))
    );
    assert_eq!(env(1, 2), Instruction::Env(pairs(&[("T2", "amd64")])));

    let d = parse_with(
        text,
        &[("VERSION", "3.20"), ("REG", "ghcr.io"), ("OTHER", "built")],
    );
    assert_eq!(d.stages[0].base, "ghcr.io/alpine:3.20");
    assert_eq!(
        d.stages[0].instructions[3].node,
        Instruction::Env(pairs(&[("V", "3.20"), ("O", "built"), ("R", "")]))
    );

    // ENV wins over an ARG of the same name, even one declared later.
    let all = instructions("ENV A=env\nARG A=arg\nWORKDIR /$A");
    assert_eq!(all[2], Instruction::Workdir(s("/env")));
    let all = parse_with(
        "FROM scratch\nARG A=arg\nENV A=env\nWORKDIR /$A",
        &[("A", "cli")],
    )
    .stages[0]
        .instructions
        .iter()
        .map(|i| i.node.clone())
        .collect::<Vec<_>>();
    assert_eq!(all[2], Instruction::Workdir(s("/env")));
    assert_eq!(
        all[0],
        Instruction::Arg(vec![Arg {
            name: s("A"),
            default: Some(s("arg")),
            value: Some(s("cli"))
        }])
    );
    // Built-ins are there for FROM.
    let d = parse_with(
        "FROM --platform=$BUILDPLATFORM golang AS b\nFROM alpine:$TARGETOS",
        &[],
    );
    assert_eq!(d.stages[0].platform.as_deref(), Some("linux/amd64"));
    assert_eq!(d.stages[1].base, "alpine:linux");
    // Global ARG defaults see earlier global ARGs.
    let d = parse_with("ARG A=1\nARG B=${A}2\nFROM img:$B", &[]);
    assert_eq!(d.stages[0].base, "img:12");
}

#[test]
fn stages_and_targets() {
    let text = "FROM golang AS Build\nRUN go build\nFROM alpine AS tools\nFROM build AS test\nRUN go test\nFROM scratch AS final\nCOPY --from=build /app /app\nCOPY --from=1 /bin/tool /bin/\nCOPY --from=nginx:latest /etc/nginx /etc/nginx\nFROM final\nRUN --mount=type=bind,from=tools,target=/t true\n";
    let d = parse_with(text, &[]);
    assert_eq!(d.stages.len(), 5);
    assert_eq!(d.stages[0].name.as_deref(), Some("build"));
    assert_eq!(d.stages[3].line, 6);
    assert_eq!(d.stage_index("BUILD"), Some(0));
    assert_eq!(d.stage_index("final"), Some(3));
    assert_eq!(d.stage_index("2"), Some(2));
    assert_eq!(d.stage_index("9"), None);
    assert_eq!(d.stage_index("nope"), None);
    assert_eq!(d.target_stages(Some("test")).unwrap(), vec![0, 2]);
    assert_eq!(d.target_stages(Some("final")).unwrap(), vec![0, 1, 3]);
    assert_eq!(d.target_stages(Some("tools")).unwrap(), vec![1]);
    assert_eq!(d.target_stages(None).unwrap(), vec![0, 1, 3, 4]);
    assert_eq!(
        d.target_stages(Some("missing")).unwrap_err().to_string(),
        "target stage \"missing\" could not be found: name one of the stages' AS names"
    );
}

#[test]
fn malformed_inputs_name_file_line_and_instruction() {
    let cases = [
        ("", "Dockerfile: no FROM instruction: a Dockerfile must start its first stage with FROM"),
        ("# only a comment\nARG A=1\n", "Dockerfile: no FROM instruction: a Dockerfile must start its first stage with FROM"),
        ("FROM\n", "Dockerfile:1: FROM requires either one or three arguments"),
        ("FROM a b\n", "Dockerfile:1: FROM requires either one or three arguments"),
        ("FROM alpine AS 1st\n", "Dockerfile:1: FROM: invalid name for build stage: \"1st\", name can't start with a number or contain symbols"),
        ("FROM a AS x\nFROM b AS X\n", "Dockerfile:2: FROM: duplicate stage name \"x\": give each stage its own name"),
        ("ARG IMG\nFROM $IMG\n", "Dockerfile:2: FROM: base name ($IMG) should not be blank"),
        ("FROM a\n\nRUNN make\n", "Dockerfile:3: unknown instruction: RUNN"),
        ("RUN make\nFROM a\n", "Dockerfile:1: RUN: no build stage in current context: only ARG may come before the first FROM"),
        ("FROM a\nRUN\n", "Dockerfile:2: RUN: RUN requires at least one argument"),
        ("FROM a\n\n\n\n\n\nCOPY --chown a b\n", "Dockerfile:7: COPY: --chown requires a value"),
        ("FROM a\nCOPY onlyone\n", "Dockerfile:2: COPY: COPY requires at least two arguments, but only 1 provided: name the destination last"),
        ("FROM a\nCOPY --bogus=1 a b\n", "Dockerfile:2: COPY: unknown flag: --bogus"),
        ("FROM a\nSHELL /bin/bash -c\n", "Dockerfile:2: SHELL: SHELL requires the arguments to be in JSON form, e.g. [\"/bin/bash\", \"-c\"]"),
        ("FROM a\nEXPOSE 80/icmp\n", "Dockerfile:2: EXPOSE: invalid proto \"icmp\" in \"80/icmp\": use tcp, udp or sctp"),
        ("FROM a\nEXPOSE 99999\n", "Dockerfile:2: EXPOSE: invalid containerPort: 99999: ports are 0 to 65535"),
        ("FROM a\nHEALTHCHECK --interval=5 CMD true\n", "Dockerfile:2: HEALTHCHECK: --interval: invalid duration \"5\", e.g. 30s or 1m30s"),
        ("FROM a\nHEALTHCHECK --retries=-1 CMD true\n", "Dockerfile:2: HEALTHCHECK: --retries must be a whole number that is not negative, not \"-1\""),
        ("FROM a\nHEALTHCHECK NONE extra\n", "Dockerfile:2: HEALTHCHECK: HEALTHCHECK NONE takes no other arguments"),
        ("FROM a\nHEALTHCHECK true\n", "Dockerfile:2: HEALTHCHECK: HEALTHCHECK requires NONE or CMD followed by a command"),
        ("FROM a\nENV K\n", "Dockerfile:2: ENV: ENV names \"K\" without a value: write K=value"),
        ("FROM a\nENV A=1 B\n", "Dockerfile:2: ENV: ENV names \"B\" without a value: write B=value"),
        ("FROM a\nWORKDIR ${X\n", "Dockerfile:2: WORKDIR: missing '}' in substitution"),
        ("FROM a\nUSER ${U:?set it with --build-arg}\n", "Dockerfile:2: USER: U: set it with --build-arg"),
        ("FROM a\nLABEL a=\"open\n", "Dockerfile:2: LABEL: unexpected end of statement while looking for matching double-quote"),
        ("FROM a\nONBUILD ONBUILD RUN x\n", "Dockerfile:2: ONBUILD: chaining ONBUILD via `ONBUILD ONBUILD` isn't allowed"),
        ("FROM a\nONBUILD FROM b\n", "Dockerfile:2: ONBUILD: FROM isn't allowed as an ONBUILD trigger"),
        ("FROM a\nRUN <<EOF\necho never ends\n", "Dockerfile:2: RUN: unterminated heredoc <<EOF: end it with a line holding only EOF"),
        ("# escape=x\nFROM a\n", "Dockerfile:1: invalid escape token \"x\": use \\ or `"),
        ("# escape=`\n# escape=\\\nFROM a\n", "Dockerfile:2: only one escape parser directive can be used"),
        ("FROM a\nVOLUME\n", "Dockerfile:2: VOLUME: VOLUME requires at least one argument"),
        ("FROM a\nFROM b\nCOPY --from=1 /x /y\n", "Dockerfile:3: COPY: invalid from flag value 1: refers to current or future build stage, use an earlier stage's index or name"),
        ("FROM a\nCOPY --from= /x /y\n", "Dockerfile:2: COPY: --from requires a value"),
        ("FROM a\nCOPY --link=maybe /x /y\n", "Dockerfile:2: COPY: --link takes true or false, not \"maybe\""),
    ];
    for (text, expected) in cases {
        assert_eq!(error(text), expected, "{text:?}");
    }
}

/// Docker's documented `.dockerignore` examples and the rules around them.
#[test]
fn dockerignore_tables() {
    let cases: &[(&str, &[(&str, bool)])] = &[
        (
            "# comment\n*/temp*",
            &[
                ("somedir/temporary.txt", true),
                ("somedir/temp", true),
                ("temp", false),
                ("a/b/temp", false),
                ("somedir/x", false),
            ],
        ),
        (
            "*/*/temp*",
            &[
                ("somedir/subdir/temporary.txt", true),
                ("somedir/temp", false),
                ("a/b/temp/x", true),
            ],
        ),
        (
            "temp?",
            &[
                ("tempa", true),
                ("tempb", true),
                ("temp", false),
                ("tempab", false),
                ("temp/", false),
                ("tempx/inner", true),
            ],
        ),
        (
            "**/*.go",
            &[("a.go", true), ("x/y/z.go", true), ("x/y/z.gox", false)],
        ),
        (
            "*.md\n!README*.md",
            &[
                ("a.md", true),
                ("README.md", false),
                ("README-secret.md", false),
                ("docs/a.md", false),
            ],
        ),
        (
            "*.md\n!README*.md\nREADME-secret.md",
            &[
                ("README.md", false),
                ("README-secret.md", true),
                ("CHANGES.md", true),
            ],
        ),
        (
            "/build/\n./dist",
            &[
                ("build", true),
                ("build/out/a.o", true),
                ("dist/x", true),
                ("src/build", false),
            ],
        ),
        (
            "docs\n!docs/keep.md",
            &[("docs/a.md", true), ("docs/keep.md", false), ("docs", true)],
        ),
        (
            "a/**/b",
            &[
                ("a/b", true),
                ("a/x/y/b", true),
                ("a/x/b/c", true),
                ("ab", false),
            ],
        ),
        (
            "vendor/**",
            &[
                ("vendor/a/b", true),
                ("vendor", false),
                ("vendorx/a", false),
            ],
        ),
        ("[a-c]*.txt\n\n", &[("b1.txt", true), ("d1.txt", false)]),
        ("\\!important", &[("!important", true)]),
        ("  spaced  ", &[("spaced", true)]),
        ("../outside", &[("../outside", true), ("outside", false)]),
    ];
    for (text, table) in cases {
        let ignore = DockerIgnore::parse(text).unwrap_or_else(|e| panic!("{text:?}: {e}"));
        for (path, excluded) in table.iter() {
            assert_eq!(
                ignore.matches(path),
                *excluded,
                "pattern {text:?} path {path:?}"
            );
        }
    }
}

#[test]
fn dockerignore_skip_dirs() {
    let cases: &[(&str, &[(&str, bool)])] = &[
        ("node_modules", &[("node_modules", true), ("src", false)]),
        (
            "docs\n!docs/keep.md",
            &[("docs", false), ("docs/old", true)],
        ),
        ("docs\n!*/keep.md", &[("docs", false), ("docs/sub", true)]),
        ("docs\n!**/keep.md", &[("docs", false), ("docs/sub", false)]),
        ("*\n!src", &[("src", false), ("target", true)]),
        ("build\n!build", &[("build", false)]),
    ];
    for (text, table) in cases {
        let ignore = DockerIgnore::parse(text).unwrap_or_else(|e| panic!("{text:?}: {e}"));
        for (dir, skip) in table.iter() {
            assert_eq!(
                ignore.may_skip_dir(dir),
                *skip,
                "pattern {text:?} dir {dir:?}"
            );
        }
    }
}

#[test]
fn dockerignore_errors() {
    for (text, expected) in [
        (
            "ok\n!\n",
            ".dockerignore:2: invalid pattern \"!\": an exception needs a pattern after the !",
        ),
        (
            "[abc\n",
            ".dockerignore:1: invalid pattern \"[abc\": unclosed character class: add ]",
        ),
        (
            "a\\",
            ".dockerignore:1: invalid pattern \"a\\\\\": a trailing \\ escapes nothing",
        ),
    ] {
        match DockerIgnore::parse(text) {
            Ok(_) => panic!("{text:?} should not parse"),
            Err(e) => assert_eq!(e.to_string(), expected, "{text:?}"),
        }
    }
}
