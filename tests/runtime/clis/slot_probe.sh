#!/bin/sh
# A test CLI measuring how many rounds run at once: each run marks itself in $PROBE_DIR,
# appends the number of marks it sees to $PROBE_LOG, waits for $PROBE_GO to exist, then
# unmarks itself and exits 0. Reads (and ignores) the prompt.
cat >/dev/null
touch "$PROBE_DIR/$$"
ls "$PROBE_DIR" | wc -l >>"$PROBE_LOG"
while [ ! -e "$PROBE_GO" ]; do sleep 0.02; done
rm -f "$PROBE_DIR/$$"
echo "probe $$ done"
