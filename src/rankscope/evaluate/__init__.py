"""Scoring: multiple choice by log-likelihood, generative by extraction and exact match."""
