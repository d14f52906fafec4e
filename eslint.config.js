import js from '@eslint/js';
import tseslint from 'typescript-eslint';
import globals from 'globals';
import scalpels from './eslint-rules/import-arrow.js';

export default tseslint.config(
  { ignores: ['**/dist/**', '**/node_modules/**', '**/testdata/**', 'test-artifacts/**'] },
  js.configs.recommended,
  ...tseslint.configs.recommended,
  {
    languageOptions: { globals: { ...globals.node } },
    rules: {
      '@typescript-eslint/no-unused-vars': [
        'error',
        { argsIgnorePattern: '^_', varsIgnorePattern: '^_' },
      ],
      '@typescript-eslint/consistent-type-imports': 'off',
    },
  },
  {
    // The arrow cli -> core <- plugins (eslint-rules/import-arrow.js says what each may import).
    files: ['core/**', 'cli/**', 'plugins/**'],
    plugins: { scalpels },
    rules: { 'scalpels/import-arrow': 'error' },
  },
);
