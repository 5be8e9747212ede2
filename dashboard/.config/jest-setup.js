/*
 * Jest setup of @grafana/create-plugin (.config/jest-setup.js), plus the
 * browser APIs @grafana/ui 12 uses that jsdom lacks (IntersectionObserver).
 * Tests of files rather than components run in the node environment
 * (a "@jest-environment node" docblock), where there is no DOM to patch.
 */

import '@testing-library/jest-dom';
import { TextEncoder, TextDecoder } from 'util';

Object.assign(global, { TextDecoder, TextEncoder });

if (typeof window !== 'undefined') {
  // https://jestjs.io/docs/manual-mocks#mocking-methods-which-are-not-implemented-in-jsdom
  Object.defineProperty(global, 'matchMedia', {
    writable: true,
    value: (query) => ({
      matches: false,
      media: query,
      onchange: null,
      addListener: jest.fn(), // deprecated
      removeListener: jest.fn(), // deprecated
      addEventListener: jest.fn(),
      removeEventListener: jest.fn(),
      dispatchEvent: jest.fn(),
    }),
  });

  HTMLCanvasElement.prototype.getContext = () => {};

  // @grafana/ui's scroll containers (Select menus) observe their content.
  class IntersectionObserver {
    observe() {}
    unobserve() {}
    disconnect() {}
    takeRecords() {
      return [];
    }
  }
  Object.defineProperty(global, 'IntersectionObserver', { writable: true, value: IntersectionObserver });
}

// i18next, which @grafana/ui initialises, advertises itself once per test file.
const consoleInfo = console.info;
console.info = (...args) => {
  if (!String(args[0]).includes('i18next')) {
    consoleInfo(...args);
  }
};
