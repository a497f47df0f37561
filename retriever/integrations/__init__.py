"""Integrations with the tools chatbot teams already run: Dify's External Knowledge API, MCP tools."""
