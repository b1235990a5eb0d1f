// Drives a real Rillet server with the framework-free core of the AI SDK's `useChat`: an
// `AbstractChat` over `DefaultChatTransport`, from the AI SDK package named on the command line
// (an npm alias from package.json: ai5, ai6, ai6strict, ai7). Prints one JSON object: what the
// chat holds at the end (status, error, messages with their text and tool parts) and the messages
// the server saved, for pytest to compare.
//
//   node ui_chat.mjs <package> <scenario> [sdk-mode]
//   env: RILLET_URL (http://127.0.0.1:PORT), RILLET_KEY (an API key), RILLET_ERROR_MODEL
//   sdk-mode: "default" (send nothing), "query" (?sdk=6) or "header" (x-rillet-sdk: 6)

const [pkg, scenario, sdkMode = 'default'] = process.argv.slice(2);
const { AbstractChat, DefaultChatTransport } = await import(pkg);
const url = process.env.RILLET_URL;
const auth = { authorization: `Bearer ${process.env.RILLET_KEY}` };
const BENCH = (words) => Array.from({ length: words }, (_, i) => `w${i + 1}`).join(' ');

// The smallest `ChatState`: plain arrays, as the React and Vue bindings keep them.
class PlainState {
  constructor(messages = []) {
    this.status = 'ready';
    this.error = undefined;
    this.messages = messages;
  }
  pushMessage = (message) => { this.messages = [...this.messages, message]; };
  popMessage = () => { this.messages = this.messages.slice(0, -1); };
  replaceMessage = (index, message) => {
    this.messages = [...this.messages.slice(0, index), message, ...this.messages.slice(index + 1)];
  };
  snapshot = (thing) => structuredClone(thing);
}

class Chat extends AbstractChat {
  constructor({ messages, ...init }) {
    super({ ...init, state: new PlainState(messages) });
  }
}

function transport(model) {
  const api = sdkMode === 'query' ? `${url}/v1/chat?sdk=6` : `${url}/v1/chat`;
  const headers = sdkMode === 'header' ? { ...auth, 'x-rillet-sdk': '6' } : auth;
  return new DefaultChatTransport({ api, headers, body: { model } });
}

function newChat(model, id = `chat-${crypto.randomUUID()}`, messages = []) {
  return new Chat({ id, messages, transport: transport(model) });
}

function textOf(message) {
  return message.parts.filter((p) => p.type === 'text').map((p) => p.text).join('');
}

function describe(chat) {
  return {
    id: chat.id,
    status: chat.status,
    error: chat.error ? chat.error.message : null,
    messages: chat.messages.map((m) => ({
      id: m.id,
      role: m.role,
      text: textOf(m),
      partTypes: m.parts.map((p) => p.type),
      tools: m.parts
        .filter((p) => p.type.startsWith('tool-') || p.type === 'dynamic-tool')
        .map((p) => ({ type: p.type, state: p.state, input: p.input, output: p.output, errorText: p.errorText })),
    })),
  };
}

// The messages the server saved, once none is still being written: an `error` chunk reaches the
// client just before the run's end is saved.
async function saved(chatId) {
  const deadline = Date.now() + 10000;
  let data;
  do {
    const response = await fetch(`${url}/v1/sessions/${encodeURIComponent(chatId)}/messages`, { headers: auth });
    if (!response.ok) return { status: response.status };
    ({ data } = await response.json());
    if (!data.some((m) => m.status === 'streaming')) break;
    await new Promise((resolve) => setTimeout(resolve, 20));
  } while (Date.now() < deadline);
  return data.map((m) => ({
    id: m.id,
    role: m.role,
    status: m.status,
    text: m.parts.filter((p) => p.type === 'text').map((p) => p.text).join(''),
  }));
}

// Wait until the chat's answer has at least `words` words.
async function untilWords(chat, words, timeoutMs = 20000) {
  const deadline = Date.now() + timeoutMs;
  const answer = () => (chat.lastMessage?.role === 'assistant' ? textOf(chat.lastMessage) : '');
  while (answer().split(' ').length < words) {
    if (chat.status === 'error') throw new Error(`the chat failed: ${chat.error?.message}`);
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${words} words`);
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

const scenarios = {
  // Two turns in one chat: the server keeps the history, each answer is saved as streamed.
  async text() {
    const chat = newChat('bench');
    await chat.sendMessage({ text: 'words=300 rate=0' });
    const first = describe(chat);
    await chat.sendMessage({ text: 'words=7 rate=0' });
    return { first, final: describe(chat), saved: await saved(chat.id), expected: [BENCH(300), BENCH(7)] };
  },

  // The demo model calls `current_time`, then reports its result.
  async tool() {
    const chat = newChat('demo');
    await chat.sendMessage({ text: 'What time is it?' });
    return { final: describe(chat), saved: await saved(chat.id) };
  },

  // Refused before the stream starts: a non-2xx JSON answer.
  async unknown_model() {
    const chat = newChat('no-such-model');
    await chat.sendMessage({ text: 'hello' });
    return { final: describe(chat), saved: await saved(chat.id) };
  },

  // The provider fails after the stream started: an `error` chunk.
  async provider_error() {
    const chat = newChat(process.env.RILLET_ERROR_MODEL);
    await chat.sendMessage({ text: 'hello' });
    return { final: describe(chat), saved: await saved(chat.id) };
  },

  // The last answer is replaced, on the client and on the server.
  async regenerate() {
    const chat = newChat('bench');
    await chat.sendMessage({ text: 'words=20 rate=0' });
    const before = describe(chat);
    await chat.regenerate();
    return { before, final: describe(chat), saved: await saved(chat.id), expected: BENCH(20) };
  },

  // Cancelled from elsewhere (the REST API) while streaming.
  async cancel() {
    const chat = newChat('bench');
    const sending = chat.sendMessage({ text: 'words=2000 rate=200' });
    await untilWords(chat, 5);
    const cancel = await fetch(`${url}/v1/sessions/${chat.id}/cancel`, { method: 'POST', headers: auth });
    await sending;
    return { cancelStatus: cancel.status, final: describe(chat), saved: await saved(chat.id), expected: BENCH(2000) };
  },

  // Nothing to resume: a chat that never sent, and one whose run has finished.
  async resume_idle() {
    const fresh = newChat('bench');
    await fresh.resumeStream();
    const done = newChat('bench');
    await done.sendMessage({ text: 'words=3 rate=0' });
    const before = describe(done);
    await done.resumeStream();
    return { fresh: describe(fresh), before, after: describe(done) };
  },

  // The page lost its stream mid-run (stop() drops the connection; the run goes on), then
  // resumes; a second page that only has the user message resumes too.
  async resume_mid() {
    const words = 400;
    const chat = newChat('bench');
    const sending = chat.sendMessage({ text: `words=${words} rate=200` });
    await untilWords(chat, 10);
    await chat.stop();
    await sending;
    const stopped = describe(chat);
    const other = newChat('bench', chat.id, [structuredClone(chat.messages[0])]);
    await Promise.all([chat.resumeStream(), other.resumeStream()]);
    return {
      stopped,
      final: describe(chat),
      other: describe(other),
      saved: await saved(chat.id),
      expected: BENCH(words),
    };
  },
};

if (!(scenario in scenarios)) throw new Error(`unknown scenario ${scenario}`);
const result = await scenarios[scenario]();
process.stdout.write(JSON.stringify({ package: pkg, scenario, sdkMode, ...result }) + '\n');
