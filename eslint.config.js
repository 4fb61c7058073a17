import js from '@eslint/js';
import tseslint from 'typescript-eslint';

export default tseslint.config(
  { ignores: ['dist/**', 'node_modules/**', 'coverage/**', 'examples/**/vendor/**'] },
  js.configs.recommended,
  ...tseslint.configs.recommended,
  {
    languageOptions: {
      globals: {
        console: 'readonly',
        process: 'readonly',
        performance: 'readonly',
        setTimeout: 'readonly',
        clearTimeout: 'readonly',
        setInterval: 'readonly',
        clearInterval: 'readonly',
        URL: 'readonly',
        TextEncoder: 'readonly',
        TextDecoder: 'readonly',
      },
    },
    rules: {
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_' }],
      '@typescript-eslint/no-non-null-assertion': 'off',
    },
  },
  {
    // shared/ is the protocol and client/ the browser SDK: they must run in browsers, so no Node built-ins.
    files: ['shared/**/*.ts', 'client/**/*.ts'],
    // client/node.ts is the Node entry; client/masked-frames.ts is Node-only too, imported by it and server/mux.ts.
    ignores: ['client/node.ts', 'client/masked-frames.ts'],
    rules: {
      'no-restricted-imports': ['error', { patterns: ['node:*', 'ws', 'fs', 'net', 'events', 'stream', 'buffer'] }],
    },
  },
);
