// What the suite's server scenarios expect the reference servers to answer, shared by
// reference-server.mjs (SDK 1.x) and dual-server.mjs (SDK 2.x): the contents, forms and
// messages; each server registers them with its own SDK.

// A 1x1 PNG and a minimal WAV: the binary contents the scenarios expect back.
export const PNG = 'iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8DwHwAFBQIAX8jx0gAAAABJRU5ErkJggg==';
export const WAV = 'UklGRiYAAABXQVZFZm10IBAAAAABAAEAQB8AAAB9AAACABAAZGF0YQIAAAA=';
export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
export const text = (t) => ({ content: [{ type: 'text', text: t }] });

/** What both servers offer. */
export const CAPABILITIES = {
  tools: { listChanged: true },
  resources: { subscribe: true, listChanged: true },
  prompts: { listChanged: true },
  logging: {},
  completions: {},
};

/** The content scenarios' tools: what each says of itself and answers. */
export const ANSWERS = {
  test_simple_text: { description: 'Answers one text block', answer: text('This is a simple text response for testing.') },
  test_image_content: { description: 'Answers a PNG image', answer: { content: [{ type: 'image', data: PNG, mimeType: 'image/png' }] } },
  test_audio_content: { description: 'Answers a WAV clip', answer: { content: [{ type: 'audio', data: WAV, mimeType: 'audio/wav' }] } },
  test_embedded_resource: {
    description: 'Answers an embedded resource',
    answer: { content: [{ type: 'resource', resource: { uri: 'test://embedded-resource', mimeType: 'text/plain', text: 'This is an embedded resource content.' } }] },
  },
  test_multiple_content_types: {
    description: 'Answers text, image and resource',
    answer: {
      content: [
        { type: 'text', text: 'Multiple content types test:' },
        { type: 'image', data: PNG, mimeType: 'image/png' },
        { type: 'resource', resource: { uri: 'test://mixed-content-resource', mimeType: 'application/json', text: '{"test":"data","value":123}' } },
      ],
    },
  },
};

/** The elicitation forms: (message, requested schema) of each elicitation tool. */
export const FORMS = {
  response: {
    type: 'object', properties: { response: { type: 'string', description: "User's response" } }, required: ['response'],
  },
  defaults: {
    message: 'Please review and update the form fields with defaults',
    requestedSchema: {
      type: 'object',
      properties: {
        name: { type: 'string', description: 'User name', default: 'John Doe' },
        age: { type: 'integer', description: 'User age', default: 30 },
        score: { type: 'number', description: 'User score', default: 95.5 },
        status: { type: 'string', description: 'User status', enum: ['active', 'inactive', 'pending'], default: 'active' },
        verified: { type: 'boolean', description: 'Verification status', default: true },
      },
      required: [],
    },
  },
  enums: {
    message: 'Please select options from the enum fields',
    requestedSchema: {
      type: 'object',
      properties: {
        untitledSingle: { type: 'string', description: 'Select one option', enum: ['option1', 'option2', 'option3'] },
        titledSingle: {
          type: 'string', description: 'Select one option with titles',
          oneOf: [{ const: 'value1', title: 'First Option' }, { const: 'value2', title: 'Second Option' }, { const: 'value3', title: 'Third Option' }],
        },
        legacyEnum: { type: 'string', description: 'Select one option (legacy)', enum: ['opt1', 'opt2', 'opt3'], enumNames: ['Option One', 'Option Two', 'Option Three'] },
        untitledMulti: { type: 'array', description: 'Select multiple options', minItems: 1, maxItems: 3, items: { type: 'string', enum: ['option1', 'option2', 'option3'] } },
        titledMulti: {
          type: 'array', description: 'Select multiple options with titles', minItems: 1, maxItems: 3,
          items: { anyOf: [{ const: 'value1', title: 'First Choice' }, { const: 'value2', title: 'Second Choice' }, { const: 'value3', title: 'Third Choice' }] },
        },
      },
      required: [],
    },
  },
};

/** Resource contents, by URI (the template's by its id). */
export const CONTENTS = {
  'test://static-text': { contents: [{ uri: 'test://static-text', mimeType: 'text/plain', text: 'This is the content of the static text resource.' }] },
  'test://static-binary': { contents: [{ uri: 'test://static-binary', mimeType: 'image/png', blob: PNG }] },
  'test://watched-resource': { contents: [{ uri: 'test://watched-resource', mimeType: 'text/plain', text: 'Watched resource content' }] },
  template: (uri, id) => ({
    contents: [{ uri, mimeType: 'application/json', text: JSON.stringify({ id, templateTest: true, data: `Data for ID: ${id}` }) }],
  }),
};

/** Prompt answers, by prompt name. */
export const MESSAGES = {
  test_simple_prompt: () => ({ messages: [{ role: 'user', content: { type: 'text', text: 'This is a simple prompt for testing.' } }] }),
  test_prompt_with_arguments: ({ arg1, arg2 }) => ({
    messages: [{ role: 'user', content: { type: 'text', text: `Prompt with arguments: arg1='${arg1}', arg2='${arg2}'` } }],
  }),
  test_prompt_with_embedded_resource: ({ resourceUri }) => ({
    messages: [
      { role: 'user', content: { type: 'resource', resource: { uri: resourceUri, mimeType: 'text/plain', text: 'Embedded resource content for testing.' } } },
      { role: 'user', content: { type: 'text', text: 'Please process the embedded resource above.' } },
    ],
  }),
  test_prompt_with_image: () => ({
    messages: [
      { role: 'user', content: { type: 'image', data: PNG, mimeType: 'image/png' } },
      { role: 'user', content: { type: 'text', text: 'Please analyze the image above.' } },
    ],
  }),
};
