# bench/broker.sh: the broker process helpers that bench/run and bench/tuning share (sourced,
# not run). Both scripts keep the broker's pid in BROKER_PID and its port in PORT.

# A loopback port nobody listens on.
free_port() {
    local port
    for _ in $(seq 100); do
        port=$((20000 + RANDOM % 20000))
        if ! (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
            echo "$port"
            return
        fi
    done
    echo "no free port found" >&2
    exit 1
}

# launch_broker LOG COMMAND...: starts COMMAND (a `vaart start` on $PORT, possibly behind
# taskset or prlimit) in the background with its output appended to LOG, sets BROKER_PID and
# waits up to 30 s until the port accepts connections; exits the script if it does not.
launch_broker() {
    local log="$1"
    shift
    "$@" >>"$log" 2>&1 &
    BROKER_PID=$!
    for _ in $(seq 300); do
        if (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null; then
            return
        fi
        kill -0 "$BROKER_PID" 2>/dev/null || { tail -20 "$log" >&2; exit 1; }
        sleep 0.1
    done
    echo "broker did not start" >&2
    tail -20 "$log" >&2
    exit 1
}

# SIGTERM, up to 30 s to exit, then SIGKILL.
stop_broker() {
    if [[ -n "$BROKER_PID" ]] && kill -0 "$BROKER_PID" 2>/dev/null; then
        kill -TERM "$BROKER_PID"
        for _ in $(seq 300); do
            kill -0 "$BROKER_PID" 2>/dev/null || break
            sleep 0.1
        done
        kill -KILL "$BROKER_PID" 2>/dev/null || true
    fi
    BROKER_PID=""
}
