// Drives Rillet's AG-UI endpoint with the official `@ag-ui/client` `HttpAgent` and prints, as one
// JSON line, what the client itself made of the stream: per run the event types it received, the
// outcome, pending tool calls, usage or error of its end and the new messages, and at the end every
// message of the thread (or `error` when the client threw).
//
// Usage: node run_agent.mjs '<config JSON>' with RILLET_URL and RILLET_KEY in the environment.
// Config: { threadId, messages: [initial messages], tools: [AG-UI tools], forwardedProps,
// toolResults: { toolName: "result text" } }. When a run leaves calls of a tool named in
// `toolResults` pending, the script answers them as the application would (a `tool` message)
// and runs the agent again, so a client-side tool round trip is two runs.
import { HttpAgent } from "@ag-ui/client";

const config = JSON.parse(process.argv[2] ?? "{}");
const agent = new HttpAgent({
  url: `${process.env.RILLET_URL}/v1/agui`,
  headers: { Authorization: `Bearer ${process.env.RILLET_KEY}` },
  threadId: config.threadId,
  initialMessages: config.messages ?? [],
});

const MAX_RUNS = 4;
const runs = [];
try {
  for (let attempt = 0; attempt < MAX_RUNS; attempt++) {
    const run = { events: [], outcome: null, pendingToolCallIds: [], usage: null, error: null };
    const { newMessages } = await agent.runAgent(
      { tools: config.tools ?? [], forwardedProps: config.forwardedProps ?? {} },
      {
        onEvent: ({ event }) => {
          run.events.push(event.type);
        },
        onRunFinishedEvent: ({ event, outcome, pendingToolCallIds }) => {
          run.outcome = outcome;
          run.pendingToolCallIds = pendingToolCallIds ?? [];
          run.usage = event.usage ?? null;
        },
        onRunErrorEvent: ({ event }) => {
          run.error = { message: event.message, code: event.code ?? null };
        },
      },
    );
    runs.push({ ...run, newMessages });
    const calls = newMessages.flatMap((m) => (m.role === "assistant" ? (m.toolCalls ?? []) : []));
    const pending = calls.filter(
      (call) =>
        run.pendingToolCallIds.includes(call.id) && config.toolResults?.[call.function.name],
    );
    if (pending.length === 0) break;
    for (const call of pending) {
      agent.addMessage({
        id: `result-${call.id}`,
        role: "tool",
        toolCallId: call.id,
        content: config.toolResults[call.function.name],
      });
    }
  }
  console.log(JSON.stringify({ runs, messages: agent.messages }));
} catch (error) {
  console.log(JSON.stringify({ runs, error: String(error?.message ?? error) }));
}
