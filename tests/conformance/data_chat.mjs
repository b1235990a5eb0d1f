// Drives a real Rillet server with AI SDK 4's chat core: `callChatApi` from `@ai-sdk/ui-utils`
// (what v4 `useChat` calls) with `streamProtocol: 'data'`, posting v4-shaped messages
// (`content`, and `parts`) to `/v1/chat?protocol=data`. Prints one JSON object: the assistant
// message v4 built, the finish reason and usage it reported, and the messages the server saved.
//
//   node data_chat.mjs <scenario>
//   env: RILLET_URL (http://127.0.0.1:PORT), RILLET_KEY (an API key), RILLET_ERROR_MODEL

import { callChatApi, generateId } from '@ai-sdk/ui-utils';

const [scenario] = process.argv.slice(2);
const url = process.env.RILLET_URL;
const auth = { authorization: `Bearer ${process.env.RILLET_KEY}` };

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

// One v4 `useChat` turn: the whole client-side history goes up, the answer streams back.
async function turn(chatId, history, text, model) {
  const user = { id: generateId(), role: 'user', content: text, parts: [{ type: 'text', text }], createdAt: new Date() };
  const messages = [...history, user];
  const result = { message: null, finishReason: null, usage: null, error: null, updates: 0 };
  try {
    await callChatApi({
      api: `${url}/v1/chat?protocol=data`,
      body: { id: chatId, messages, model },
      streamProtocol: 'data',
      headers: auth,
      abortController: () => new AbortController(),
      restoreMessagesOnFailure: () => {},
      onResponse: undefined,
      onUpdate: ({ message }) => {
        result.updates += 1;
        result.message = message;
      },
      onFinish: (message, { usage, finishReason }) => {
        result.message = message;
        result.usage = usage;
        result.finishReason = finishReason;
      },
      onToolCall: undefined,
      generateId,
      fetch: undefined,
      lastMessage: messages[messages.length - 1],
    });
  } catch (error) {
    result.error = error.message;
  }
  const message = result.message;
  return {
    ...result,
    messages: message ? [...messages, message] : messages,
    message: message && {
      id: message.id,
      role: message.role,
      content: message.content,
      annotations: message.annotations ?? [],
      partTypes: message.parts.map((p) => p.type),
      toolInvocations: message.toolInvocations ?? [],
    },
  };
}

const scenarios = {
  async text() {
    const chatId = `chat-${crypto.randomUUID()}`;
    const first = await turn(chatId, [], 'words=200 rate=0', 'bench');
    const second = await turn(chatId, first.messages, 'words=5 rate=0', 'bench');
    return { chatId, first, second, saved: await saved(chatId) };
  },
  async tool() {
    const chatId = `chat-${crypto.randomUUID()}`;
    return { chatId, first: await turn(chatId, [], 'What time is it?', 'demo'), saved: await saved(chatId) };
  },
  async unknown_model() {
    const chatId = `chat-${crypto.randomUUID()}`;
    return { chatId, first: await turn(chatId, [], 'hello', 'no-such-model'), saved: await saved(chatId) };
  },
  async provider_error() {
    const chatId = `chat-${crypto.randomUUID()}`;
    const first = await turn(chatId, [], 'hello', process.env.RILLET_ERROR_MODEL);
    return { chatId, first, saved: await saved(chatId) };
  },
};

if (!(scenario in scenarios)) throw new Error(`unknown scenario ${scenario}`);
const result = await scenarios[scenario]();
for (const key of ['first', 'second']) if (result[key]) delete result[key].messages;
process.stdout.write(JSON.stringify({ scenario, ...result }) + '\n');
