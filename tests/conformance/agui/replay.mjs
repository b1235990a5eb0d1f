// Feeds a list of AG-UI events (argv[2], JSON) through the official `@ag-ui/client` pipeline
// (`AbstractAgent.runAgent`: chunk transform, event verifier, message reducer) without HTTP, and
// prints the messages the client built, or the error its verifier raised, as one JSON line. The
// Python tests give it the AG-UI encoder's output for fixed runs, so event sequences no live model
// produces (reasoning, cancellation) are still judged by the client's own code.
import { AbstractAgent } from "@ag-ui/client";
import { from } from "rxjs";

class Replay extends AbstractAgent {
  constructor(events) {
    super({ threadId: "thread-1" });
    this.events = events;
  }

  run() {
    return from(this.events);
  }
}

const agent = new Replay(JSON.parse(process.argv[2]));
const ends = [];
try {
  const { newMessages } = await agent.runAgent(
    { runId: "client-run" },
    {
      onRunFinishedEvent: ({ outcome, pendingToolCallIds }) => {
        ends.push({ outcome, pendingToolCallIds: pendingToolCallIds ?? [] });
      },
      onRunErrorEvent: ({ event }) => {
        ends.push({ error: event.message, code: event.code ?? null });
      },
    },
  );
  console.log(JSON.stringify({ newMessages, ends }));
} catch (error) {
  console.log(JSON.stringify({ error: String(error?.message ?? error) }));
}
