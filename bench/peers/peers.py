"""The peers' side of weft's W1 and W3 workloads, measured in this process.

W1: a 5-step chain of trivial steps (x + 1), 200 runs one after another, each run checkpointed
to a SQLite file (LangGraph's AsyncSqliteSaver; DBOS with its SQLite system database).
W2: one run over 2,000 items (ids with 10% duplicates), at most 3 at once (LangGraph: Send
fan-out, max_concurrency 3), then a dedupe by id: the wall time of the run.
W3: 15 items that wait 50 ms, at most 3 at once, items 4, 9 and 14 failing on their first
attempt and retried after 10 ms (LangGraph: Send fan-out, RetryPolicy, max_concurrency 3).

Prints one JSON object per figure on stdout ({"peer", "workload", ...}); `weft-bench peers`
reads them and prints weft's figures as ratios against them. Run `setup.sh` first.
"""

import asyncio
import json
import operator
import os
import statistics
import sys
import tempfile
import time
from typing import Annotated, TypedDict

RUNS = 200


def report(**fields):
    print(json.dumps(fields), flush=True)


def p(values, q):
    values = sorted(values)
    return values[min(len(values) - 1, round((len(values) - 1) * q))]


# --- LangGraph -------------------------------------------------------------------------------


async def langgraph_w1(folder):
    from langgraph.checkpoint.sqlite.aio import AsyncSqliteSaver
    from langgraph.graph import END, START, StateGraph

    class State(TypedDict):
        x: int

    def step(state):
        return {"x": state["x"] + 1}

    graph = StateGraph(State)
    for i in range(5):
        graph.add_node(f"s{i}", step)
    graph.add_edge(START, "s0")
    for i in range(4):
        graph.add_edge(f"s{i}", f"s{i + 1}")
    graph.add_edge("s4", END)
    async with AsyncSqliteSaver.from_conn_string(os.path.join(folder, "lg.db")) as saver:
        app = graph.compile(checkpointer=saver)
        lat = []
        for i in range(RUNS):
            t0 = time.perf_counter()
            out = await app.ainvoke({"x": 0}, {"configurable": {"thread_id": f"w1-{i}"}})
            lat.append((time.perf_counter() - t0) * 1e3)
            assert out["x"] == 5, out
    report(peer="langgraph", workload="w1", p50_ms=p(lat, 0.5), p99_ms=p(lat, 0.99))


async def langgraph_w3(folder, run_no):
    from langgraph.checkpoint.sqlite.aio import AsyncSqliteSaver
    from langgraph.graph import END, START, StateGraph
    from langgraph.types import RetryPolicy, Send

    class State(TypedDict):
        results: Annotated[list, operator.add]

    attempts = {}

    async def discover(item):
        i = item["i"]
        attempts[i] = attempts.get(i, 0) + 1
        await asyncio.sleep(0.05)
        if i % 5 == 4 and attempts[i] == 1:
            raise RuntimeError("transient")
        return {"results": [i]}

    def fan_out(_state):
        return [Send("discover", {"i": i}) for i in range(15)]

    retry = RetryPolicy(
        max_attempts=2,
        initial_interval=0.01,
        backoff_factor=1.0,
        jitter=False,
        retry_on=Exception,
    )
    graph = StateGraph(State)
    graph.add_node("discover", discover, retry_policy=retry)
    graph.add_conditional_edges(START, fan_out, ["discover"])
    graph.add_edge("discover", END)
    async with AsyncSqliteSaver.from_conn_string(
        os.path.join(folder, f"lg-w3-{run_no}.db")
    ) as saver:
        app = graph.compile(checkpointer=saver)
        t0 = time.perf_counter()
        out = await app.ainvoke(
            {"results": []},
            {"configurable": {"thread_id": f"w3-{run_no}"}, "max_concurrency": 3},
        )
        wall = time.perf_counter() - t0
    assert sorted(out["results"]) == list(range(15)), out
    return wall


async def langgraph_w2(folder):
    from langgraph.checkpoint.sqlite.aio import AsyncSqliteSaver
    from langgraph.graph import END, START, StateGraph
    from langgraph.types import Send

    class State(TypedDict):
        items: Annotated[list, operator.add]
        unique: int

    def item(task):
        return {"items": [{"id": str(task["i"] % 1800), "n": str(task["i"])}]}

    def fan_out(_state):
        return [Send("item", {"i": i}) for i in range(2000)]

    def dedupe(state):
        return {"unique": len({x["id"] for x in state["items"]})}

    graph = StateGraph(State)
    graph.add_node("item", item)
    graph.add_node("dedupe", dedupe)
    graph.add_conditional_edges(START, fan_out, ["item"])
    graph.add_edge("item", "dedupe")
    graph.add_edge("dedupe", END)
    async with AsyncSqliteSaver.from_conn_string(os.path.join(folder, "lg-w2.db")) as saver:
        app = graph.compile(checkpointer=saver)
        t0 = time.perf_counter()
        out = await app.ainvoke(
            {"items": [], "unique": 0},
            {"configurable": {"thread_id": "w2"}, "max_concurrency": 3},
        )
        wall = time.perf_counter() - t0
    assert out["unique"] == 1800, out["unique"]
    report(peer="langgraph", workload="w2", wall_s=wall)


# --- DBOS ------------------------------------------------------------------------------------


def dbos_w1(folder):
    from dbos import DBOS

    DBOS(
        config={
            "name": "weft-peers",
            "system_database_url": "sqlite:///" + os.path.join(folder, "dbos.db"),
        }
    )

    @DBOS.step()
    def step(x):
        return x + 1

    @DBOS.workflow()
    def chain(x):
        for _ in range(5):
            x = step(x)
        return x

    DBOS.launch()
    try:
        lat = []
        for _ in range(RUNS):
            t0 = time.perf_counter()
            assert chain(0) == 5
            lat.append((time.perf_counter() - t0) * 1e3)
    finally:
        DBOS.destroy()
    report(peer="dbos", workload="w1", p50_ms=p(lat, 0.5), p99_ms=p(lat, 0.99))


def main():
    which = set(sys.argv[1:]) or {"w1", "w2", "w3"}
    with tempfile.TemporaryDirectory() as folder:
        if "w1" in which:
            asyncio.run(langgraph_w1(folder))
            dbos_w1(folder)
        if "w2" in which:
            asyncio.run(langgraph_w2(folder))
        if "w3" in which:
            walls = [asyncio.run(langgraph_w3(folder, n)) for n in range(5)]
            report(
                peer="langgraph",
                workload="w3",
                median_s=statistics.median(walls),
                best_s=min(walls),
            )


if __name__ == "__main__":
    main()
